-- miltertest: a DKIM-signed message from an outside host (192.0.2.10, in example.com's SPF
-- range) gets our Authentication-Results, inserted at the very top (SMFIR_INSHEADER index 0),
-- with dkim, spf and dmarc passing.
--   AUTHMILTER_SIGNED_MESSAGE  the signed message (written by the Rust test)
local t = dofile(os.getenv("AUTHMILTER_PEERS_DIR") .. "/milter_common.lua")

t.run(function()
  local conn = t.connect()
  t.client(conn, "ext.example", "192.0.2.10", "mail.example.com")
  t.transaction(conn, "MT0001", "alice@example.com", t.env("AUTHMILTER_SIGNED_MESSAGE"))
  t.ok(mt.eom(conn), "eom")
  assert(mt.getreply(conn) == SMFIR_CONTINUE, "end of message not continued")
  assert(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"),
         "no Authentication-Results inserted")

  local ar = mt.getheader(conn, "Authentication-Results", 0)
  mt.echo("Authentication-Results:" .. tostring(ar))
  assert(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results", ar, 0),
         "not inserted at index 0")
  assert(ar:match("^ ?mx%.test%.example;"), "authserv-id")
  for _, method in ipairs({ "dkim=pass", "spf=pass", "dmarc=pass" }) do
    assert(t.contains(ar, method), method .. " missing")
  end
  assert(not mt.eom_check(conn, MT_QUARANTINE), "quarantined")
  assert(not mt.eom_check(conn, MT_HDRDELETE), "a header deleted")
  mt.disconnect(conn)
end)
