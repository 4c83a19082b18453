-- miltertest: DMARC policies from one outside host (203.0.113.66, in no SPF range), two
-- messages on one milter connection.
--   AUTHMILTER_REJECT_MESSAGE      From ceo@example.com (p=reject), unsigned
--   AUTHMILTER_REJECT_REPLY        the reply the core decided for it, "550 5.7.1 text"
--   AUTHMILTER_QUARANTINE_MESSAGE  From news@example.net (p=quarantine), unsigned
local t = dofile(os.getenv("AUTHMILTER_PEERS_DIR") .. "/milter_common.lua")

t.run(function()
  local conn = t.connect()
  t.client(conn, "evil.example", "203.0.113.66", "evil.example")

  -- p=reject: SMFIR_REPLYCODE with the 550, and no header edits.
  t.transaction(conn, "MT0002", "ceo@example.com", t.env("AUTHMILTER_REJECT_MESSAGE"))
  t.ok(mt.eom(conn), "eom (reject)")
  assert(mt.getreply(conn) == SMFIR_REPLYCODE,
         "no SMFIR_REPLYCODE: " .. tostring(mt.getreply(conn)))
  local code, status, text = t.env("AUTHMILTER_REJECT_REPLY"):match("^(%d%d%d) (%S+) (.+)$")
  assert(code == "550", "expected reply is not a 550")
  assert(mt.eom_check(conn, MT_SMTPREPLY, code, status, text), "not the expected 550 reply")
  assert(not mt.eom_check(conn, MT_HDRINSERT), "header inserted into a refused message")

  -- The connection goes on: p=quarantine is accepted, quarantined, and gets our results.
  t.transaction(conn, "MT0003", "news@example.net", t.env("AUTHMILTER_QUARANTINE_MESSAGE"))
  t.ok(mt.eom(conn), "eom (quarantine)")
  assert(mt.getreply(conn) == SMFIR_CONTINUE, "quarantined message not continued")
  assert(mt.eom_check(conn, MT_QUARANTINE), "not quarantined")
  local ar = mt.getheader(conn, "Authentication-Results", 0)
  mt.echo("Authentication-Results:" .. tostring(ar))
  assert(t.contains(ar, "dmarc=fail"), "dmarc=fail missing")
  mt.disconnect(conn)
end)
