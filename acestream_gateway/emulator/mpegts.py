"""An endless, synthetic, constant-bitrate MPEG-TS that players recognise, for the engine emulator.

The emulator must serve many live sessions at 2-8 Mbit/s from one process, and what it serves must
decode in ffprobe and VLC. So the video is a tiny H.264 picture written by hand: keyframes made of
I_PCM macroblocks (raw samples, no entropy coding) showing a bar that moves on every keyframe, and
P frames whose macroblocks are all skipped. Filler-data NAL units pad every frame up to the bitrate,
so the bytes ride on the video PID. Everything but timestamps and continuity counters is computed
once per stream, and the filler packets are sliced from a prebuilt run, so producing a second of
stream costs little more than copying its bytes.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

TS_PACKET_SIZE = 188
WIDTH = 64
HEIGHT = 48
VIDEO_PID = 0x100
PMT_PID = 0x1000

_PACKET_BITS = TS_PACKET_SIZE * 8
_PAYLOAD = TS_PACKET_SIZE - 4
# An adaptation field carrying a PCR takes 8 bytes: length, flags and the 6-byte PCR.
_PCR_PAYLOAD = _PAYLOAD - 8
_PES_HEADER_SIZE = 19
_SYSTEM_CLOCK_HZ = 27_000_000
_PTS_HZ = 90_000
_WRAP_33_BITS = 1 << 33
# Distinct keyframe pictures (and idr_pic_id values) before the motion repeats.
_VARIANTS = 16
# frame_num counts modulo 16, so the 16 possible P-frame slices are built once.
_LOG2_MAX_FRAME_NUM = 4
# Intervals kept under the DVB limits (PAT/PMT <= 100 ms, PCR <= 40 ms) with room for jitter.
_PSI_PERIOD_S = 0.09
_PCR_PERIOD_S = 0.035
# Below this a packet lasts so long that PAT, PMT and PCR leave little room for video.
_MIN_BITRATE_BPS = 200_000
# Decoder headroom added to the worst-case arrival of a frame when stamping its decode time.
_MUX_MARGIN_S = 0.1
# Longest run of filler packets sliced in one piece from the prebuilt run.
_RUN = 128
_FILLER_START = b"\x00\x00\x01\x0c"
_EMULATION = re.compile(rb"\x00\x00(?=[\x00-\x03])")

_PSI, _PCR, _PLAIN = range(3)


class _BitWriter:
    """Collects an RBSP bit by bit: H.264 headers are not byte aligned."""

    def __init__(self) -> None:
        self._value = 0
        self._bits = 0

    def u(self, bits: int, value: int) -> None:
        self._value = (self._value << bits) | value
        self._bits += bits

    def ue(self, value: int) -> None:
        # Exp-Golomb: as many leading zeros as code has bits after its first one.
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align(self) -> None:
        self.u(-self._bits % 8, 0)

    def trailing(self) -> bytes:
        self.u(1, 1)
        self.align()
        return self.to_bytes()

    def to_bytes(self) -> bytes:
        return self._value.to_bytes(self._bits // 8, "big")


def _nal(header: int, rbsp: bytes) -> bytes:
    # Emulation prevention keeps a start code from appearing inside the payload.
    return b"\x00\x00\x00\x01" + bytes((header,)) + _EMULATION.sub(b"\x00\x00\x03", rbsp)


def _sps(fps: int) -> bytes:
    w = _BitWriter()
    w.u(8, 66)  # Baseline profile, which allows I_PCM and needs no B frames
    w.u(8, 0xC0)  # constraint_set0/1: constrained baseline, decodable everywhere
    w.u(8, 41)  # level 4.1: its bitrate cap is above what the filler pads to
    w.ue(0)  # seq_parameter_set_id
    w.ue(_LOG2_MAX_FRAME_NUM - 4)
    w.ue(2)  # pic_order_cnt_type 2: output order follows frame_num, nothing per slice
    w.ue(1)  # max_num_ref_frames: a P frame copies the previous picture
    w.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    w.ue(WIDTH // 16 - 1)
    w.ue(HEIGHT // 16 - 1)
    w.u(3, 0b110)  # frame_mbs_only, direct_8x8_inference, no cropping
    w.u(1, 1)  # vui_parameters_present_flag, so players learn the frame rate
    w.u(5, 0b00001)  # no aspect/overscan/signal/chroma info; timing info follows
    w.u(32, 1)  # num_units_in_tick
    w.u(32, 2 * fps)  # time_scale: two ticks per frame
    w.u(1, 1)  # fixed_frame_rate_flag
    w.u(4, 0b0001)  # no NAL/VCL HRD, no pic_struct; bitstream restriction follows
    w.u(1, 1)  # motion_vectors_over_pic_boundaries_flag
    for value in (0, 0, 15, 15, 0, 1):
        # no byte/bit limits, default mv lengths, no reordering, one frame buffered: low delay
        w.ue(value)
    return _nal(0x67, w.trailing())


def _pps() -> bytes:
    w = _BitWriter()
    w.ue(0)  # pic_parameter_set_id
    w.ue(0)  # seq_parameter_set_id
    w.u(2, 0)  # CAVLC, no bottom-field POC
    w.ue(0)  # one slice group
    w.ue(0)  # num_ref_idx_l0_default_active_minus1
    w.ue(0)  # num_ref_idx_l1_default_active_minus1
    w.u(3, 0)  # no weighted prediction
    w.se(0)  # pic_init_qp_minus26
    w.se(0)  # pic_init_qs_minus26
    w.se(0)  # chroma_qp_index_offset
    w.u(3, 0b100)  # deblocking control present (slices turn it off), no constrained intra/redundant
    return _nal(0x68, w.trailing())


def _luma(x: int, y: int, bar: int) -> int:
    # Samples stay within 16..235, so the raw bytes never form a start code.
    return 235 if (x - bar) % WIDTH < 6 else 40 + 2 * x + y


def _macroblock(mbx: int, mby: int, bar: int) -> bytes:
    luma = [_luma(16 * mbx + x, 16 * mby + y, bar) for y in range(16) for x in range(16)]
    cb = [96 + 4 * (8 * mby + y) for y in range(8) for x in range(8)]
    cr = [160 - 2 * (8 * mbx + x) for y in range(8) for x in range(8)]
    return bytes(luma + cb + cr)


def _idr_slice(variant: int) -> bytes:
    """A keyframe of I_PCM macroblocks whose bar sits `variant` steps across the picture."""
    w = _BitWriter()
    w.ue(0)  # first_mb_in_slice
    w.ue(7)  # slice_type I (all slices)
    w.ue(0)  # pic_parameter_set_id
    w.u(_LOG2_MAX_FRAME_NUM, 0)  # frame_num
    w.ue(variant)  # idr_pic_id: consecutive IDRs must differ
    w.u(2, 0)  # no_output_of_prior_pics, long_term_reference
    w.se(0)  # slice_qp_delta
    w.ue(1)  # disable_deblocking_filter_idc
    w.ue(25)  # mb_type I_PCM
    w.align()
    bar = variant * WIDTH // _VARIANTS
    blocks = [
        _macroblock(mbx, mby, bar) for mby in range(HEIGHT // 16) for mbx in range(WIDTH // 16)
    ]
    # Once the first block ends, the stream is byte aligned: ue(25) plus 7 alignment bits = 0D 00.
    rbsp = w.to_bytes() + b"\x0d\x00".join(blocks) + b"\x80"
    return _nal(0x65, rbsp)


def _p_slice(frame_num: int) -> bytes:
    """A P frame that skips every macroblock: it shows the previous picture again."""
    w = _BitWriter()
    w.ue(0)  # first_mb_in_slice
    w.ue(5)  # slice_type P (all slices)
    w.ue(0)  # pic_parameter_set_id
    w.u(_LOG2_MAX_FRAME_NUM, frame_num)
    w.u(3, 0)  # no ref_idx override, no list modification, sliding-window marking
    w.se(0)  # slice_qp_delta
    w.ue(1)  # disable_deblocking_filter_idc
    w.ue((WIDTH // 16) * (HEIGHT // 16))  # mb_skip_run covering the whole picture
    return _nal(0x41, w.trailing())


def _keyframe_unit(variant: int, fps: int) -> bytes:
    """Access unit delimiter, parameter sets and IDR slice, then the filler's NAL header."""
    return _nal(0x09, b"\x10") + _sps(fps) + _pps() + _idr_slice(variant) + _FILLER_START


def _p_unit(frame_num: int) -> bytes:
    return _nal(0x09, b"\x30") + _p_slice(frame_num) + _FILLER_START


def _crc32_mpeg(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def _section(table_id: int, table_id_extension: int, body: bytes) -> bytes:
    length = 5 + len(body) + 4
    head = struct.pack(">BHHBBB", table_id, 0xB000 | length, table_id_extension, 0xC1, 0, 0)
    return head + body + _crc32_mpeg(head + body).to_bytes(4, "big")


def _psi_packets(pid: int, section: bytes) -> list[bytes]:
    """The section's packet for each continuity counter value, so repeating it is a lookup."""
    body = (b"\x00" + section).ljust(_PAYLOAD, b"\xff")
    return [bytes((0x47, 0x40 | pid >> 8, pid & 0xFF, 0x10 | cc)) + body for cc in range(16)]


def _pat() -> bytes:
    return _section(0x00, 1, struct.pack(">HH", 1, 0xE000 | PMT_PID))


def _pmt() -> bytes:
    # Program 1: PCR on the video PID, one H.264 stream (stream_type 0x1B).
    body = struct.pack(">HHBHH", 0xE000 | VIDEO_PID, 0xF000, 0x1B, 0xE000 | VIDEO_PID, 0xF000)
    return _section(0x02, 1, body)


def _filler_run() -> memoryview:
    """Video packets full of filler bytes with counters 0,1,..: any run is one slice of this."""
    packets = (
        bytes((0x47, VIDEO_PID >> 8, VIDEO_PID & 0xFF, 0x10 | i % 16)) + b"\xff" * _PAYLOAD
        for i in range(16 + _RUN)
    )
    return memoryview(b"".join(packets))


def _timestamp(prefix: int, ts: int) -> bytes:
    return bytes(
        (
            (prefix << 4) | ((ts >> 29) & 0x0E) | 1,
            (ts >> 22) & 0xFF,
            ((ts >> 14) & 0xFE) | 1,
            (ts >> 7) & 0xFF,
            ((ts << 1) & 0xFE) | 1,
        )
    )


def _pes_header(pts: int, dts: int) -> bytes:
    # Unbounded length (allowed for video), data-aligned, PTS and DTS present.
    return b"\x00\x00\x01\xe0\x00\x00\x84\xc0\x0a" + _timestamp(3, pts) + _timestamp(1, dts)


def _pcr_field(pcr: int, random_access: bool) -> bytes:
    base, extension = divmod(pcr, 300)
    value = (base % _WRAP_33_BITS) << 15 | 0x3F << 9 | extension
    return bytes((7, 0x50 if random_access else 0x10)) + value.to_bytes(6, "big")


def _payload(head: bytes, total: int, offset: int, size: int) -> bytes:
    """Bytes [offset, offset+size) of a PES made of `head`, filler bytes, and the closing 0x80."""
    end = offset + size
    if end <= len(head):
        return head[offset:end]
    fill = min(end, total - 1) - max(offset, len(head))
    return head[offset:] + b"\xff" * fill + (b"\x80" if end == total else b"")


class _Cadence(NamedTuple):
    """A count of packets for PAT/PMT and for PCR: between repeats, or where each was last sent."""

    psi: int
    pcr: int


class _Plan(NamedTuple):
    """Where one frame's packets go: segments of (kind, packet count), and the clocks after it."""

    segments: list[tuple[int, int]]
    capacity: int
    end: int
    last_psi: int
    last_pcr: int


def _plan_frame(
    start: int, nominal_end: int, need: int, keyframe: bool, last: _Cadence, every: _Cadence
) -> _Plan:
    """Lay a frame out from packet `start` to at least `nominal_end`, with room for `need` bytes.

    A frame too big for its share (a keyframe at a low bitrate) runs late and later frames
    shrink to catch up, so the stream stays at the bitrate and never drifts from its clock.
    """
    segments: list[tuple[int, int]] = []
    pos, capacity, last_psi, last_pcr = start, 0, last.psi, last.pcr
    # A keyframe opens with PAT and PMT, unless the previous frame happened to end with them.
    psi_first = keyframe and last_psi != start - 2
    while pos < nominal_end or capacity < need:
        if (psi_first and not segments) or pos - last_psi >= every.psi:
            segments.append((_PSI, 2))
            last_psi, pos = pos, pos + 2
        elif (keyframe and capacity == 0) or pos - last_pcr >= every.pcr:
            segments.append((_PCR, 1))
            last_pcr, pos, capacity = pos, pos + 1, capacity + _PCR_PAYLOAD
        else:
            due = min(last_psi + every.psi, last_pcr + every.pcr)
            missing = -(-(need - capacity) // _PAYLOAD)
            run = min(due, max(nominal_end, pos + missing)) - pos
            segments.append((_PLAIN, run))
            pos, capacity = pos + run, capacity + run * _PAYLOAD
    return _Plan(segments, capacity, pos, last_psi, last_pcr)


class TsStream:
    """One session's endless stream; `read` continues where the previous call stopped."""

    def __init__(
        self,
        *,
        bitrate_bps: int = 4_000_000,
        keyframe_interval_s: float = 2.0,
        fps: int = 25,
        start_pcr_s: float = 0.0,
    ) -> None:
        if fps <= 0 or keyframe_interval_s <= 0 or start_pcr_s < 0:
            raise ValueError("fps and keyframe_interval_s must be positive, start_pcr_s >= 0")
        self._bitrate = bitrate_bps
        self._fps = fps
        self._gop = max(1, round(keyframe_interval_s * fps))
        # Keyframe pictures are built on first use, so starting a session stays cheap.
        self._keyframes: dict[int, bytes] = {}
        self._p_units = [_p_unit(n) for n in range(1 << _LOG2_MAX_FRAME_NUM)]
        packets_per_s = bitrate_bps / _PACKET_BITS
        self._every = _Cadence(
            psi=int(_PSI_PERIOD_S * packets_per_s) - 1,
            pcr=max(1, int(_PCR_PERIOD_S * packets_per_s) - 2),
        )
        late = self._check_bitrate()
        delay_s = 1 / fps + late / packets_per_s + _MUX_MARGIN_S
        self._pcr0 = round(start_pcr_s * _SYSTEM_CLOCK_HZ)
        self._dts0 = round((start_pcr_s + delay_s) * _PTS_HZ)
        self._pat, self._pmt = _psi_packets(0, _pat()), _psi_packets(PMT_PID, _pmt())
        self._filler = _filler_run()
        self._frame = 0
        self._next_packet = 0
        self._last = _Cadence(psi=0, pcr=0)
        self._cc = {0: 0, PMT_PID: 0, VIDEO_PID: 0}
        self._pending = memoryview(b"")
        self._offset = 0
        self._packets_read = 0

    def _check_bitrate(self) -> int:
        """Refuse bitrates whose frames cannot catch up after a keyframe; return packets late.

        A P frame needs at most 3 packets (PAT, PMT, video), so with 4 or more per frame each
        one wins back a packet, and the keyframe's overrun must be won back within its GOP.
        Below _MIN_BITRATE_BPS, PAT, PMT and PCR would crowd the video out.
        """
        too_low = ValueError(
            f"bitrate_bps={self._bitrate} is too low for {self._fps} fps with a keyframe "
            f"every {self._gop} frames"
        )
        if self._bitrate < _MIN_BITRATE_BPS:
            raise too_low
        per_frame = self._bitrate // (_PACKET_BITS * self._fps)
        # The last variant has the longest idr_pic_id, hence the largest keyframe.
        largest = len(self._keyframe(_VARIANTS - 1))
        video = -(-(_PES_HEADER_SIZE + largest + 1) // _PCR_PAYLOAD)
        keyframe = -(-video * self._every.psi // (self._every.psi - 2))  # PAT/PMT interleaved
        if per_frame < 4 or keyframe + 3 > per_frame * self._gop - 3 * (self._gop - 1):
            raise too_low
        return keyframe + 6

    def _keyframe(self, variant: int) -> bytes:
        unit = self._keyframes.get(variant)
        if unit is None:
            unit = self._keyframes[variant] = _keyframe_unit(variant, self._fps)
        return unit

    @property
    def bitrate_bps(self) -> int:
        return self._bitrate

    @property
    def stream_time_s(self) -> float:
        """Stream time covered by what `read` returned so far."""
        return self._packets_read * _PACKET_BITS / self._bitrate

    def read(self, n_packets: int) -> bytes:
        """The next n_packets*188 bytes of the endless stream.

        Continues where the last call stopped; a large read is the engine's initial burst.
        """
        if n_packets < 0:
            raise ValueError("n_packets must be >= 0")
        wanted = n_packets * TS_PACKET_SIZE
        parts: list[bytes | memoryview] = []
        while wanted:
            if self._offset == len(self._pending):
                self._pending, self._offset = memoryview(self._next_frame()), 0
            take = min(wanted, len(self._pending) - self._offset)
            parts.append(self._pending[self._offset : self._offset + take])
            self._offset += take
            wanted -= take
        self._packets_read += n_packets
        return b"".join(parts)

    def _next_frame(self) -> bytes:
        k, position = self._frame, self._frame % self._gop
        keyframe = position == 0
        if keyframe:
            unit = self._keyframe(k // self._gop % _VARIANTS)
        else:
            unit = self._p_units[position % len(self._p_units)]
        dts = (self._dts0 + k * _PTS_HZ // self._fps) % _WRAP_33_BITS
        head = _pes_header(dts, dts) + unit
        nominal_end = (k + 1) * self._bitrate // (_PACKET_BITS * self._fps)
        plan = _plan_frame(
            self._next_packet, nominal_end, len(head) + 1, keyframe, self._last, self._every
        )
        parts = self._emit(plan, head, keyframe)
        self._frame, self._next_packet = k + 1, plan.end
        self._last = _Cadence(psi=plan.last_psi, pcr=plan.last_pcr)
        return b"".join(parts)

    def _emit(self, plan: _Plan, head: bytes, keyframe: bool) -> list[bytes | memoryview]:
        parts: list[bytes | memoryview] = []
        slot, offset, total = self._next_packet, 0, plan.capacity
        for kind, count in plan.segments:
            if kind == _PSI:
                parts += (self._pat[self._count(0, 1)], self._pmt[self._count(PMT_PID, 1)])
            elif kind == _PCR:
                field = _pcr_field(self._pcr_at(slot), random_access=keyframe and offset == 0)
                data = _payload(head, total, offset, _PCR_PAYLOAD)
                parts.append(self._video_packet(offset == 0, field, data))
                offset += _PCR_PAYLOAD
            else:
                offset = self._emit_plain(parts, head, total, offset, count)
            slot += count
        return parts

    def _emit_plain(
        self, parts: list[bytes | memoryview], head: bytes, total: int, offset: int, count: int
    ) -> int:
        # Packets holding only filler bytes are sliced from the prebuilt run; the others are built.
        closing = total - 1
        while count:
            if offset < len(head) or offset + _PAYLOAD > closing:
                data = _payload(head, total, offset, _PAYLOAD)
                parts.append(self._video_packet(offset == 0, b"", data))
                run = 1
            else:
                run = min(count, (closing - offset) // _PAYLOAD, _RUN)
                cc = self._count(VIDEO_PID, run)
                parts.append(self._filler[cc * TS_PACKET_SIZE : (cc + run) * TS_PACKET_SIZE])
            offset += run * _PAYLOAD
            count -= run
        return offset

    def _video_packet(self, unit_start: bool, field: bytes, data: bytes) -> bytes:
        flags = (0x40 if unit_start else 0) | VIDEO_PID >> 8
        control = (0x30 if field else 0x10) | self._count(VIDEO_PID, 1)
        return bytes((0x47, flags, VIDEO_PID & 0xFF, control)) + field + data

    def _count(self, pid: int, packets: int) -> int:
        """The continuity counter for the next packet of `pid`, advanced past `packets`."""
        cc = self._cc[pid]
        self._cc[pid] = (cc + packets) % 16
        return cc

    def _pcr_at(self, slot: int) -> int:
        # The PCR dates the byte holding its last base bit (byte 10 of the packet).
        bits = (slot * TS_PACKET_SIZE + 10) * 8
        return self._pcr0 + bits * _SYSTEM_CLOCK_HZ // self._bitrate
