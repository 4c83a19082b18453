#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/TARGET/) from testdata/ and from the
conversations below. Run from anywhere: python3 fuzz/seeds.py. The seeds are committed; rerun
only to change them. Each seed is small (a few KB at most)."""
import gzip, io, os, shutil, struct, zipfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
corpus = os.path.join(root, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(os.path.join(root, path), "rb") as f:
        return f.read()


signed = read("testdata/messages/signed-example.com.eml").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
crlf = lambda s: s.replace("\n", "\r\n")

# --- configuration and policies -------------------------------------------------------------
for path in ["testdata/config/full.toml", "testdata/config/broken-unknown-key.toml",
             "testdata/config/broken-value.toml", "packaging/authmilter.toml"]:
    put("config", os.path.basename(path), read(path))
put("config", "smtp-submission.toml", """authserv_id = "mx.example.org"
[smtp]
hostname = "mx.example.org"
local_domains = ["example.org"]
[[smtp.listeners]]
address = "127.0.0.1:587"
role = "submission"
[smtp.auth]
backend = "passwd-file"
passwd_file = "/etc/authmilter/passwd"
""")
for path in ["policies/default.toml", "policies/examples/monitor.toml",
             "policies/examples/strict.toml"]:
    put("policy", os.path.basename(path), read(path))

# --- SPF ------------------------------------------------------------------------------------
spf = [
    "v=spf1 ip4:192.0.2.0/24 -all",
    "v=spf1  a   mx -all ",
    "v=spf1 +a -mx ~ptr ?exists:%{i}.example.com all",
    "v=spf1 a:foo.example.xn--zckzah a:abc.123-4 mx:%{d}",
    "v=spf1 include:o.spf.example.com. redirect=%{d}.d.spf.example.com.",
    "v=spf1 exists:macro%%percent%_%_space%-url-space.example.com",
    "v=spf1 ip4:0.0.0.0/0 ip4:255.255.255.255/32 ip6:::/0 ip6:2001:db8::/128",
    "v=spf1 ip6:::1.1.1.1/0 ip6:Cafe:Babe:8000::/33 a/24//64 mx:mx.example.com/16",
    "v=spf1 moo.cow-far_out=man:dog/cat default=+ x= exp=explain._spf.%{d}",
    "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all",
    "%{s} %{l} %{o} %{d4} %{i} %{v} %{h} %{c} %{r} %{t} %{p} %{ir}.%{v}._spf.%{d2}",
    "v=spf1 a:nx1.void3.example a:nx2.void3.example ptr:%{d} ?all",
]
for i, record in enumerate(spf):
    put("spf_record", f"record-{i:02}", record)

# --- DKIM / ARC tag lists and key records ---------------------------------------------------
rsa_pub = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtxmgXZ2ss+By8SaAJRa0JrbcLOlDKC4/0bEQzIZZjeh+EnKmWXrC/yiLHJkO3DtQF4v2nzIxQrl5POOc7e+UjluLTgJ85YDIfu3am4ynbOSqsoN3IBlNIYBQuP4Rxrmta+M4u/Z8f4e+Y14DmmQlkefRQ67k4RyKJX/q4cADP6525E49cods3l8d4/roHlttLlThpSmd/dKIAFUIVlZPisfGU8ijw16sNmjmRML/Ta31+sErxde2pNfxiNskYeHghqEWLTcQoXVG4dQSp+85J6A+/BdYl64V1NJW93wgTZZ3jPmKm1B8dzlUvHdtMiN08xEP64Gpd7pJYoEAPEo/hwIDAQAB"
arc_set = crlf("""ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.com; s=rsa; t=1795889346;
\tb=VkoNJF1W16bYflcyL8coSsb/thRSrPnLEbizETGk43Ospf5KCw==
ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;
\ts=rsa; t=1795889346; h=From:To:Subject:Date; bh=jpHnYaFvu7RxKmjlZ4u1IYqYrErt/5siBSNuhVFz3cY=;
\tb=fVV1Okaqx/kHZU6EXiICpP3f4k2RWYQUA7JVjvyD1kCPyEPdzhOaMDQn2n07gEgLLGSSC==
ARC-Authentication-Results: i=1; lists.example.org; spf=pass smtp.mailfrom=example.com
""")
tags = {
    "key-rsa": f"v=DKIM1; k=rsa; p={rsa_pub}",
    "key-ed25519": "v=DKIM1; k=ed25519; p=yyiiWiJrD0g71rTX05ozJLm1nNGhZCnVlj4VIlmXSGI=",
    "key-revoked": "v=DKIM1; k=rsa; h=sha256; s=email; t=y:s; n=note; p=",
    "seal": "i=1; a=rsa-sha256; cv=none; d=example.com; s=rsa; t=1795889346; b=VkoNJF1W16bY==",
    "ams": "i=2; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=rsa; h=From:To; bh=jpHn=; b=fVV1=",
    "dkim-signature": signed.split(b"\r\nFrom:")[0].split(b": ", 1)[1].decode(),
    "arc-message": arc_set + signed.decode(),
}
for name, value in tags.items():
    put("dkim_arc_tags", name, value)

# --- whole messages for the verifier --------------------------------------------------------
put("message_verify", "signed-example.com.eml", signed)
put("message_verify", "arc-set.eml", arc_set.encode() + signed)
put("message_verify", "unsigned.eml", crlf("""From: Alice <alice@example.com>
From: Mallory <mallory@example.net>
To: bob@example.net
Subject: two From fields

body
"""))
put("message_verify", "forged-ar.eml", crlf("""Authentication-Results: mx.test; dkim=pass header.d=example.com
Authentication-Results: (comment) other.example 1; spf=pass smtp.mailfrom=example.com
From: alice@example.com
Subject: hello

hi
"""))

# --- Authentication-Results -----------------------------------------------------------------
ar = [
    "mx.test; spf=pass smtp.mailfrom=alice@example.com",
    "(sneaky) mx.test.example 1; dmarc=pass",
    "  (nested (comment) \\) here) mx.test; none",
    "MX.TEST; dkim=pass header.d=example.com header.s=rsa header.b=VkoNJF1W; arc=none",
]
for i, value in enumerate(ar):
    put("auth_results", f"value-{i}", value)
put("auth_results", "message", crlf("""Authentication-Results: other.example; spf=pass
Authentication-Results: mx.test; dkim=pass
Received: from x
From: a@example.com

body
"""))

# --- DMARC reports --------------------------------------------------------------------------
reports = os.path.join(root, "testdata", "reports")
for base, _, files in os.walk(reports):
    for name in sorted(files):
        path = os.path.join(base, name)
        if os.path.getsize(path) <= 4096:
            tag = "hostile-" if base.endswith("hostile") else ""
            put("dmarc_report", tag + name.replace("!", "_"), read(path))

# --- SMTP AUTH ------------------------------------------------------------------------------
auth = {
    "plain-initial": "PLAIN AGFsaWNlAHNlY3JldA==\nalice:{PLAIN}secret\n",
    "plain-challenge": "PLAIN\nYWxpY2UAYWxpY2UAc2VjcmV0\nalice:{PLAIN}secret\nbob:{CLEARTEXT}pw\n",
    "login": "LOGIN\nYWxpY2U=\nc2VjcmV0\n# comment\nalice:{PLAIN}secret\n",
    "login-initial": "LOGIN YWxpY2U=\nc2VjcmV0\nalice:{PLAIN}secret:extra\n",
    "cancel": "PLAIN\n*\n",
}
for name, text in auth.items():
    put("smtp_auth", name, text)

# --- SMTP sessions: a selector byte (0 MX from outside, 1 MX trusted, 2 submission) -----------
body = signed.decode()
smtp = {
    "mx-inbound": (0, f"EHLO mail.example.com\r\nMAIL FROM:<alice@example.com> SIZE=1000\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n{body}\r\n.\r\nQUIT\r\n"),
    "mx-pipelined": (0, "EHLO c\r\nMAIL FROM:<a@example.com> BODY=8BITMIME\r\nRCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org\r\nRCPT TO:<c@elsewhere.example>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\nRSET\r\nNOOP\r\nVRFY a\r\nHELP\r\nQUIT\r\n"),
    "mx-bdat": (0, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.org>\r\nBDAT 32\r\nFrom: a@example.com\r\n\r\nhello\r\nBDAT 0 LAST\r\nQUIT\r\n"),
    "trusted-outbound": (1, f"HELO localhost\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<someone@elsewhere.example>\r\nDATA\r\n{body}\r\n.\r\nQUIT\r\n"),
    "submission-plain": (2, "EHLO client\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<x@elsewhere.example>\r\nDATA\r\nFrom: alice@example.com\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n"),
    "submission-login": (2, "EHLO client\r\nAUTH LOGIN\r\nYWxpY2U=\r\nd3Jvbmc=\r\nAUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\nSTARTTLS\r\nQUIT\r\n"),
}
for name, (selector, text) in smtp.items():
    put("smtp_session", name, bytes([selector]) + text.encode())


# --- milter conversations (libmilter framing: u32 length, command byte, data) ---------------
def frame(code, data=b""):
    return struct.pack(">I", len(data) + 1) + code + data


def cstr(*parts):
    return b"".join(p.encode() + b"\0" for p in parts)


def macros(stage, **pairs):
    return frame(b"D", stage + b"".join(cstr(k, v) for k, v in pairs.items()))


optneg = frame(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
conn_v4 = frame(b"C", cstr("ext.example") + b"4" + struct.pack(">H", 25) + cstr("192.0.2.10"))
conn_v6 = frame(b"C", cstr("v6.example") + b"6" + struct.pack(">H", 25) + cstr("2001:db8::1"))
conn_local = frame(b"C", cstr("localhost") + b"L" + struct.pack(">H", 0) + cstr("/tmp/sock"))


def message(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    out = b""
    for field in head.decode().replace("\r\n\t", "\n\t").split("\r\n"):
        name, _, value = field.partition(":")
        out += frame(b"L", cstr(name, value.lstrip(" ").replace("\r\n", "\n")))
    out += frame(b"N")
    out += frame(b"B", body)
    return out


milter = {
    "verify": optneg + macros(b"C", j="mx.test", _="ext.example [192.0.2.10]") + conn_v4
    + frame(b"H", cstr("mail.example.com")) + macros(b"M", i="4Xb2QUEUE")
    + frame(b"M", cstr("<alice@example.com>", "SIZE=100")) + frame(b"R", cstr("<bob@example.net>"))
    + frame(b"T") + message(signed) + frame(b"E") + frame(b"Q"),
    "two-messages-abort": optneg + conn_v6 + frame(b"H", cstr("h"))
    + frame(b"M", cstr("<a@example.com>")) + frame(b"A") + frame(b"M", cstr("<>"))
    + frame(b"R", cstr("<b@example.net>")) + frame(b"L", cstr("From", "a@example.com"))
    + frame(b"N") + frame(b"B", b"x\r\n") + frame(b"E") + frame(b"K"),
    "local-outbound": optneg + conn_local + macros(b"M", auth_authen="alice")
    + frame(b"M", cstr("<alice@example.com>")) + frame(b"R", cstr("<x@elsewhere.example>"))
    + frame(b"U", cstr("XYZZY")) + frame(b"L", cstr("Subject", "hi")) + frame(b"N")
    + frame(b"E", b"tail\r\n") + frame(b"Q"),
    "old-version": frame(b"O", struct.pack(">III", 2, 0x3F, 0x7F)) + conn_v4 + frame(b"Q"),
}
for name, data in milter.items():
    put("milter_session", name, data)
