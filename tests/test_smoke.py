from django.db import connection


def test_suite_runs_on_the_configured_database(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_run_embedded_refuses_a_port_in_use_before_printing_an_address():
    """Regression (issue 17): ``make run`` printed its address before the port was bound."""
    import socket
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [str(root / "scripts" / "run-embedded")],
            env={"PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "already in use" in done.stderr and "PORT=" in done.stderr
    assert "Tandem is at" not in done.stdout
    script = (root / "scripts" / "run-embedded").read_text()
    # The address is printed only after the server answers on it.
    assert script.index('if answers; then\n        echo "Tandem is at') > script.index("runserver")
