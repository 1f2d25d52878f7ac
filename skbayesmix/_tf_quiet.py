"""Import TensorFlow without the start-up lines it writes to stderr."""

# TensorFlow 2.21 writes about nine lines to file descriptor 2 when it starts on a
# CPU-only machine: absl's "before InitializeLog" notice, oneDNN and CPU-feature
# notices, "Could not find cuda drivers" and, when it first lists its devices,
# "E0000 ... failed call to cuInit: ... UNKNOWN ERROR (303)". They come from C++
# before TF_CPP_MIN_LOG_LEVEL or absl's verbosity are read, so no Python-level
# setting removes them all, and the last one reads like a failure.
#
# Here fd 2 points at a temporary file while TensorFlow and TFP are imported and
# list their devices. Afterwards every line that is not one of those known
# start-up lines is written back to fd 2, byte for byte and in order: a real
# warning or error still reaches the user, and an exception raised inside the
# import does not lose what was written before it. The environment and TF's
# logging settings are left as the user set them. SKBAYESMIX_TF_LOGS=1 turns the
# filter off.

import contextlib
import os
import re
import sys
import tempfile
import threading

__all__ = ["SHOW_TF_LOGS_VARIABLE", "import_tensorflow", "startup_lines_dropped"]

SHOW_TF_LOGS_VARIABLE = "SKBAYESMIX_TF_LOGS"

# absl's C++ log prefix, "I0000 00:00:1795815242.334298    3266 port.cc:153] ",
# and the older TF one, "2024-01-01 12:00:00.000000: I tensorflow/.../port.cc:113] ".
_LOG_LINE = re.compile(
    r"(?:[IWEF]\d{4} [\d:.]+\s+\d+ |\d{4}-\d\d-\d\d [\d:.]+: [IWEF] )"
    r"(?:\S*/)?(?P<source>[\w.]+):\d+\] (?P<message>.*)"
)

# (source file or None for any, start of the message) of each known start-up line.
_STARTUP_MESSAGES = (
    ("port.cc", re.compile(r"oneDNN custom operations are on\. ")),
    (
        "cudart_stub.cc",
        re.compile(r"Could not find cuda drivers on your machine, GPU will not"),
    ),
    (
        "cpu_feature_guard.cc",
        re.compile(r"This TensorFlow binary is optimized to use available CPU"),
    ),
    # Only the codes of a machine without a usable GPU; any other cuInit failure
    # may be a broken driver the user needs to hear about.
    (
        None,
        re.compile(r"failed call to cuInit: .*(UNKNOWN ERROR \(303\)|NO_DEVICE)"),
    ),
)

_ABSL_PREAMBLE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are "
    r"written to STDERR\s*"
)

# The second line of the cpu_feature_guard message; dropped only right after it.
_CPU_FEATURE_CONTINUATION = re.compile(
    r"To enable the following instructions: [\w ,]+ in other operations, "
    r"rebuild TensorFlow with the appropriate compiler flags\.\s*"
)

# fd 2 belongs to the whole process: one redirection at a time.
_REDIRECT_LOCK = threading.Lock()


def _is_startup_line(text):
    """True when `text`, one line without its newline, is a known start-up line."""
    if _ABSL_PREAMBLE.fullmatch(text):
        return True
    match = _LOG_LINE.fullmatch(text)
    if match is None:
        return False
    return any(
        (source is None or match["source"] == source)
        and pattern.match(match["message"])
        for source, pattern in _STARTUP_MESSAGES
    )


def _without_startup_lines(data):
    """The bytes `data` with TensorFlow's known start-up lines removed.

    Parameters
    ----------
    data : bytes
        What was written to stderr.

    Returns
    -------
    kept : bytes
        Every other line, unchanged and in order, including a last line without
        its newline.
    """
    kept = []
    after_cpu_feature_line = False
    for line in data.splitlines(keepends=True):
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        if after_cpu_feature_line and _CPU_FEATURE_CONTINUATION.fullmatch(text):
            after_cpu_feature_line = False
            continue
        after_cpu_feature_line = False
        if _is_startup_line(text):
            after_cpu_feature_line = "cpu_feature_guard" in text
            continue
        kept.append(line)
    return b"".join(kept)


def _show_tf_logs():
    return os.environ.get(SHOW_TF_LOGS_VARIABLE, "").strip() not in ("", "0")


def _flush_python_stderr():
    # Python's own buffered writes must land on the fd they were meant for.
    with contextlib.suppress(Exception):
        sys.stderr.flush()


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data) :]


@contextlib.contextmanager
def startup_lines_dropped():
    """Drop TensorFlow's known start-up lines from fd 2 while the block runs.

    Everything else written to fd 2 inside the block, by any thread, is written
    back when the block ends, also when it raises. Writes from other threads are
    therefore delayed until then, not lost. With SKBAYESMIX_TF_LOGS set to
    anything but '' or '0', or when fd 2 cannot be duplicated, nothing is
    filtered.
    """
    if _show_tf_logs():
        yield
        return
    with _REDIRECT_LOCK, contextlib.ExitStack() as stack:
        try:
            capture = stack.enter_context(tempfile.TemporaryFile())
            saved_fd = os.dup(2)
        except OSError:
            # No temporary file or no fd 2 (a daemon): show everything instead.
            capture = None
        if capture is None:
            yield
            return
        stack.callback(os.close, saved_fd)
        _flush_python_stderr()
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            _flush_python_stderr()
            os.dup2(saved_fd, 2)
            capture.seek(0)
            kept = _without_startup_lines(capture.read())
            # A failed write must not hide an exception raised in the block.
            with contextlib.suppress(OSError):
                _write_all(2, kept)


def import_tensorflow():
    """Import TensorFlow and TensorFlow Probability without their start-up lines.

    Returns
    -------
    tf : module
        `tensorflow`.

    tfp : module
        `tensorflow_probability`.
    """
    with startup_lines_dropped():
        import tensorflow as tf
        import tensorflow_probability as tfp

        # The cuInit line comes when TF first lists its devices, otherwise at the
        # first op. Listing them here keeps it inside the filter and, unlike an
        # op, leaves the runtime uninitialised, so the user can still set thread
        # counts or visible devices.
        tf.config.list_physical_devices()
    return tf, tfp
