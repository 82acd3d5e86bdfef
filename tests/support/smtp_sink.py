"""A real SMTP server for the tests: prints every message it accepts, and every recipient it
refuses, as a JSON line.

Recipients whose local part starts with "reject" are refused for good (550); those starting with
"later" are refused once for now (451) and accepted the next time.

Usage: python3 smtp_sink.py PORT. Prints {"ready": PORT} once listening; stops when stdin closes.
"""
import email
import email.policy
import json
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self):
        self.deferred = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("reject"):
            print(json.dumps({"refused": address, "code": 550}), flush=True)
            return "550 5.1.1 No such user here"
        if local.startswith("later") and address not in self.deferred:
            self.deferred.add(address)
            print(json.dumps({"refused": address, "code": 451}), flush=True)
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        # "data" as it came over the wire; "subject" and "body" decoded, as a mail client shows them.
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        print(json.dumps({
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", "replace"),
            "subject": str(message["subject"] or ""),
            "body": body.get_content() if body is not None else "",
        }), flush=True)
        return "250 OK"


def main():
    port = int(sys.argv[1])
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    print(json.dumps({"ready": port}), flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
