#!/usr/bin/env python3
"""Regenerates the binary seeds of the fuzz corpus (corpus/README.md says what each is).

  test/fuzz/make_seeds.py mpegts            real MPEG-TS from ffmpeg (libx264, libx265, mpeg2video, mp2)
  test/fuzz/make_seeds.py shm BINDIR        segments of a live vrelayd (BINDIR/vrelayd), so
                                            rerun it when the layout version changes

The text seeds (control, config, address, replies) are plain files, edited by hand.
"""
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
TS = 188


def write(target, name, data):
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


# ---- mpegts: the first byte is the target's cut rule (0-6: 1-7 packets a datagram, 7: RTP
# carrying 7 packets, 8-255: that many bytes), the rest the stream.

def ffmpeg(*args):
    with tempfile.NamedTemporaryFile(suffix=".mts") as out:
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, "-f", "mpegts", out.name],
                       check=True)
        return open(out.name, "rb").read()


def video(codec, frames=2, size="32x32", extra=()):
    encoder = {
        "h264": ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0"],
        "hevc": ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none"],
        "mpeg2": ["-c:v", "mpeg2video", "-q:v", "20"],
    }[codec]
    return ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-frames:v", str(frames), *encoder,
                  "-pix_fmt", "yuv420p", *extra)


def packets(stream):
    return [stream[i:i + TS] for i in range(0, len(stream), TS)]


def pid(packet):
    return (packet[1] & 0x1F) << 8 | packet[2]


def null_packet():
    return bytes([0x47, 0x1F, 0xFF, 0x10]) + b"\xff" * (TS - 4)


def rtp(payload, sequence, csrc=False, extension=False, padding=0):
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | (1 if csrc else 0)
    header = struct.pack(">BBHII", first, 33, sequence, sequence * 3600, 0x76726C79)  # PT 33: MP2T
    if csrc:
        header += struct.pack(">I", 0x12345678)
    if extension:
        header += struct.pack(">HH", 0xBEDE, 0)
    tail = b"\x00" * (padding - 1) + bytes([padding]) if padding else b""
    return header + payload + tail


def mpegts():
    h264 = video("h264")
    write("mpegts", "h264_idr_1316", b"\x06" + h264)
    write("mpegts", "h264_idr_one_packet_each", b"\x00" + h264)
    write("mpegts", "h264_unaligned_200", bytes([200]) + h264)
    ps = packets(h264)
    ps += [null_packet()] * (-len(ps) % 7)
    write("mpegts", "h264_idr_rtp", b"\x07" + b"".join(rtp(b"".join(ps[i:i + 7]), i // 7) for i in range(0, len(ps), 7)))
    # One TS packet per RTP datagram with a CSRC, a header extension and 4 bytes of padding:
    # 12 + 4 + 4 + 188 + 4 = 212 bytes, the cut rule.
    write("mpegts", "h264_rtp_csrc_extension_padding",
          bytes([212]) + b"".join(rtp(p, i, csrc=True, extension=True, padding=4) for i, p in enumerate(packets(h264)[:8])))
    # Intra refresh: no IDR after the first; the tables, then the stream from the 4th
    # picture, whose SPS and recovery-point SEI make it a key frame.
    ir = packets(video("h264", frames=6, extra=["-x264-params", "keyint=3:intra-refresh=1:repeat-headers=1"]))
    starts = [i for i, p in enumerate(ir) if pid(p) == 0x100 and p[1] & 0x40]
    write("mpegts", "h264_recovery_point_sei", b"\x06" + b"".join(ir[:starts[0]] + ir[starts[3]:]))
    write("mpegts", "hevc_irap", b"\x06" + video("hevc", frames=1))
    write("mpegts", "mpeg2_i_picture", b"\x06" + video("mpeg2"))
    # Audio listed first in the PMT: the inspector must find the video among several streams.
    write("mpegts", "mp2_audio_then_h264", b"\x06" + ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=32x32:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-map", "1:a", "-map", "0:v", "-frames:v", "2", "-t", "0.08", "-c:v", "libx264", "-preset", "ultrafast",
        "-bf", "0", "-pix_fmt", "yuv420p", "-c:a", "mp2", "-b:a", "64k"))
    # The source changes program: H.264 on PMT PID 0x1000, then HEVC on PMT PID 0x1100.
    write("mpegts", "program_change_h264_to_hevc",
          b"\x06" + h264 + video("hevc", frames=1, extra=["-mpegts_pmt_start_pid", "0x1100"]))


# ---- shm: the size of the mapping (4 bytes, little-endian), then the segment from its
# header up to the ring's slots (zeros in a fresh segment, and the target fills with zeros).

HEADER = struct.Struct("<QIIQQiIQQQQIII")  # magic .. max_datagram (common/shm.hpp, Header)


def live_segment(bindir, control, subscribe_from, http):
    instance = "fuzzseed%d" % os.getpid()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as cfg:
        cfg.write(f"instance: {instance}\ncontrol:\n  listen: \"{control}\"\n"
                  "ingest:\n  listen: 127.0.0.1:0\n  ring_slots: 16\n  ring_bytes: 0\n  max_datagram: 188\n"
                  f"fanout:\n  max_subscribers: 2\nhttp:\n  listen: \"{http}\"\n")
        cfg.flush()
        daemon = subprocess.Popen([os.path.join(bindir, "vrelayd"), "-F", "-c", cfg.name], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        try:
            ready = dict(kv.split("=", 1) for kv in daemon.stdout.readline().split()[2:])
            host, port = ready["control"].rsplit(":", 1)
            session = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
            session.recv(200)  # EVENT HELLO
            if subscribe_from:
                session.sendall(b"NAME seed\r\nCONECTAR 5004\r\n")
                time.sleep(0.2)
            ihost, iport = ready["ingest"].rsplit(":", 1)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(3):
                udp.sendto(null_packet(), (ihost, int(iport)))
            time.sleep(1.2)  # past ingest's first tick: a bitrate sample in StreamInfo
            segment = open(f"/dev/shm/vrelay.{instance}", "rb").read()
            session.close()
        finally:
            daemon.terminate()
            daemon.wait()
    fields = HEADER.unpack_from(segment)
    total, ring_offset = fields[3], fields[10]
    return bytearray(segment[:ring_offset + 128]), total  # header .. RingControl


def shm(bindir):
    seg, total = live_segment(bindir, "127.0.0.1:0", True, "127.0.0.1:0")
    size = lambda n: struct.pack("<I", n)
    write("shm", "live_ipv4_subscriber_http", size(total) + seg)
    seg6, total6 = live_segment(bindir, "[::1]:0", True, "off")
    write("shm", "live_ipv6_subscriber_no_http", size(total6) + seg6)
    empty, total_empty = live_segment(bindir, "127.0.0.1:0", False, "off")
    write("shm", "live_no_subscriber", size(total_empty) + empty)
    version = struct.unpack_from("<I", seg, 8)[0]
    starting = bytearray(seg)
    struct.pack_into("<I", starting, 8, 0)
    write("shm", "starting_version_0", size(total) + starting)
    other = bytearray(seg)
    struct.pack_into("<I", other, 8, (version >> 16) - 1 << 16)
    write("shm", "older_layout_version", size(total) + other)
    write("shm", "truncated_mapping", size(total - 4096) + seg)
    write("shm", "shorter_than_header", size(100) + seg[:100])
    magic = bytearray(seg)
    magic[0:8] = b"VRRELY1!"
    write("shm", "bad_magic", size(total) + magic)
    # A subscriber slot left mid-write (odd seqlock) by a writer that died.
    torn = bytearray(seg)
    subscribers = HEADER.unpack_from(seg)[9]
    struct.pack_into("<I", torn, subscribers, struct.unpack_from("<I", torn, subscribers)[0] | 1)
    write("shm", "subscriber_mid_write", size(total) + torn)


if __name__ == "__main__":
    if sys.argv[1:2] == ["mpegts"]:
        mpegts()
    elif sys.argv[1:2] == ["shm"] and len(sys.argv) == 3:
        shm(sys.argv[2])
    else:
        sys.exit(__doc__)
