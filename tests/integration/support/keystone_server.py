"""A real Keystone for the tests: SQLite, fernet tokens, bootstrapped, on a loopback port.

Usage: python keystone_server.py DIR

Sets Keystone up in DIR (config, database, key repositories, `keystone-manage bootstrap` with
admin password "secret"), prints "port N" once it serves http://127.0.0.1:N/v3, and exits when
its parent (the test process) goes away. gunicorn and uwsgi are not used: Keystone's WSGI
entry point parses the host program's argv, so it is served here by wsgiref with threads.
"""

import os
import subprocess
import sys
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

CONFIG = """[DEFAULT]
[database]
connection = sqlite:///{dir}/keystone.db
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = {dir}/fernet-keys
[fernet_receipts]
key_repository = {dir}/fernet-receipts
[credential]
key_repository = {dir}/credential-keys
"""


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def manage(conf, *args):
    exe = os.path.join(os.path.dirname(sys.executable), "keystone-manage")
    subprocess.run([exe, "--config-file", conf, *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def exit_with_parent(parent):
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def main():
    directory = os.path.abspath(sys.argv[1])
    parent = os.getppid()
    threading.Thread(target=exit_with_parent, args=(parent,), daemon=True).start()
    conf = os.path.join(directory, "keystone.conf")
    with open(conf, "w") as f:
        f.write(CONFIG.format(dir=directory))
    for repo in ("fernet-keys", "fernet-receipts", "credential-keys"):
        os.makedirs(os.path.join(directory, repo), exist_ok=True)

    # Bound first, so the bootstrap can name the port in the catalog; nobody connects before
    # "port N" is printed.
    server = Server(("127.0.0.1", 0), Quiet)
    port = server.server_port
    user = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    manage(conf, "db_sync")
    manage(conf, "fernet_setup", *user)
    manage(conf, "credential_setup", *user)
    manage(conf, "bootstrap", "--bootstrap-password", "secret",
           "--bootstrap-public-url", "http://127.0.0.1:%d/v3" % port)

    os.environ["OS_KEYSTONE_CONFIG_FILES"] = conf
    sys.argv = [sys.argv[0]]
    from keystone.wsgi.api import application

    server.set_app(application)
    print("port %d" % port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
