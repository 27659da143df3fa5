import os
import socket
import threading

from mbnas.locking import file_lock, holder


def test_a_dead_holder_on_this_host_is_taken_over(tmp_path):
    lock = tmp_path / "supernet.lock"
    lock.write_text(f"{socket.gethostname()} 999999999")  # no such process
    with file_lock(lock, poll_s=0.01):
        assert holder(lock) == f"{socket.gethostname()} {os.getpid()}"
    assert not lock.exists()


def test_a_holder_on_another_host_is_waited_for_and_named(tmp_path, capsys):
    lock = tmp_path / "supernet.lock"
    lock.write_text("another-machine 999999999")  # its pid means nothing here: never stale
    threading.Timer(0.3, lock.unlink).start()
    with file_lock(lock, poll_s=0.05, waiting="waiting for the warm-up"):
        assert holder(lock).endswith(str(os.getpid()))  # taken only once the other let go
    err = capsys.readouterr().err
    assert err.count("waiting for the warm-up") == 1 and "another-machine 999999999" in err
