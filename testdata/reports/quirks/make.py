#!/usr/bin/env python3
"""Writes the quirk corpus: aggregate reports shaped the way real receivers get them wrong.

Every file is our own, written here to reproduce one sender behaviour (see README.md beside
this script). Run it from this directory to regenerate the files; the output is
deterministic (fixed gzip and zip timestamps).
"""
import base64, gzip, io, zipfile

def report(org='Reporter A', email='noreply-dmarc@reporter-a.example', extra='',
           rid='q-001', policy=None, records=None, wrap=None, meta_extra=''):
    policy = policy if policy is not None else (
        '<domain>example.com</domain><adkim>r</adkim><aspf>r</aspf><p>none</p>'
        '<sp>none</sp><pct>100</pct>')
    records = records if records is not None else [
        ('192.0.2.1', 3, 'none', 'pass', 'pass'),
        ('198.51.100.7', 2, 'none', 'fail', 'fail'),
    ]
    rows = ''.join(
        f'<record><row><source_ip>{ip}</source_ip><count>{n}</count><policy_evaluated>'
        f'<disposition>{d}</disposition><dkim>{k}</dkim><spf>{s}</spf></policy_evaluated></row>'
        f'<identifiers><header_from>example.com</header_from></identifiers><auth_results>'
        f'<dkim><domain>example.com</domain><selector>s1</selector><result>{k}</result></dkim>'
        f'<spf><domain>example.com</domain><result>{s}</result></spf></auth_results></record>\n'
        for ip, n, d, k, s in records)
    body = (f'<feedback>\n<report_metadata><org_name>{org}</org_name><email>{email}</email>'
            f'{extra}<report_id>{rid}</report_id><date_range><begin>1714521600</begin>'
            f'<end>1714607999</end></date_range>{meta_extra}</report_metadata>\n'
            f'<policy_published>{policy}</policy_published>\n{rows}</feedback>\n')
    if wrap:
        body = wrap[0] + body + wrap[1]
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body

def gz(data):
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode='wb', mtime=0) as f:
        f.write(data)
    return out.getvalue()

def zipped(name, data):
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo(name, (2024, 5, 1, 0, 0, 0)), data)
    return out.getvalue()

def message(content_type, name, payload, subject):
    b64 = base64.encodebytes(payload).decode().replace('\n', '\r\n')
    name_param = f'; name="{name}"' if name else ''
    disposition = f'Content-Disposition: attachment; filename="{name}"\r\n' if name else ''
    return ('From: noreply-dmarc@reporter-b.example\r\nTo: dmarc@example.com\r\n'
            f'Subject: {subject}\r\nDate: Thu, 02 May 2024 01:00:00 +0000\r\n'
            'Message-ID: <quirk@reporter-b.example>\r\nMIME-Version: 1.0\r\n'
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            '--b1\r\nContent-Type: text/plain\r\n\r\nThis is a DMARC aggregate report.\r\n'
            f'--b1\r\nContent-Type: {content_type}{name_param}\r\n{disposition}'
            f'Content-Transfer-Encoding: base64\r\n\r\n{b64}--b1--\r\n').encode()

files = {
    'empty-org-name.xml': report(org='', rid='q-empty-org').encode(),
    'xs-schema-wrapper.xml': report(rid='q-wrapper', wrap=(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">\n', '</xs:schema>\n')).encode(),
    'latin1-bytes.xml': report(org='Soci\xe9t\xe9 G\xe9n\xe9rale Mail', rid='q-latin1')
        .encode('latin-1'),
    'unescaped-address.xml': report(rid='q-address',
        extra='<extra_contact_info>Postmaster <postmaster@reporter-a.example></extra_contact_info>')
        .encode(),
    'bare-ampersand.xml': report(org='Smith & Sons Mail', rid='q-amp').encode(),
    'empty-optional-fields.xml': report(rid='q-empty-optional',
        extra='<extra_contact_info></extra_contact_info>',
        policy='<domain>example.com</domain><adkim></adkim><aspf/><p>none</p><sp></sp>'
               '<pct></pct><fo/>').encode(),
    'missing-optional-fields.xml': report(rid='q-missing-optional',
        policy='<domain>example.com</domain><p>reject</p>',
        records=[('203.0.113.9', 7, 'reject', 'fail', 'fail')]).encode(),
    'gzip-trailing-crlf.xml.gz': gz(report(rid='q-gzip-crlf').encode()) + b'\r\n',
    'gzip-in-zip.zip': zipped('report.xml.gz', gz(report(rid='q-gzip-in-zip').encode())),
    'octet-stream.eml': message('application/octet-stream', 'ATT00001.bin',
        gz(report(rid='q-octet').encode()), 'Report domain: example.com'),
    'odd-name.eml': message('application/x-zip-compressed', 'example.com report (1)',
        zipped('report', report(rid='q-odd-name').encode()), 'DMARC report'),
}
# For the one quirk parsedmarc does not read itself (it decodes the zip's first member as text),
# the test compares with parsedmarc's reading of the member once gunzipped.
files['gzip-in-zip.inner.xml'] = report(rid='q-gzip-in-zip').encode()

for name, data in files.items():
    with open(name, 'wb') as f:
        f.write(data)
