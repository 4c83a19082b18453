-- Shared by the miltertest scripts in this folder (run by tests/integration/miltertest.rs).
-- The test passes everything through the environment:
--   AUTHMILTER_MILTER_PORT  the daemon's milter port on 127.0.0.1
--   AUTHMILTER_PEERS_DIR    this folder (for dofile)
-- and each script names the message files it reads.

local common = {}

-- Runs a script's body. miltertest (2.11, even with -v) exits 1 on an error without printing
-- its message, so print it first: the Rust test shows miltertest's output when it fails.
function common.run(body)
  local ok, err = pcall(body)
  if not ok then
    mt.echo("FAILED: " .. tostring(err))
    error(err, 0)
  end
end

-- Fails the script with `what` when a miltertest call returned an error string.
function common.ok(result, what)
  if result ~= nil then
    error(what .. ": " .. tostring(result))
  end
end

function common.env(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error(name .. " is not set")
  end
  return value
end

-- Connects and negotiates the way Postfix does (version 6, everything offered), and checks
-- the steps the daemon asked to skip replies for. miltertest must honour them: a reply it
-- waits for but never gets is a read timeout, which fails the next call.
function common.connect()
  mt.set_timeout(3)
  local port = common.env("AUTHMILTER_MILTER_PORT")
  local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 20, 0.1)
  if conn == nil then
    error("cannot connect to the milter on port " .. port)
  end
  common.ok(mt.negotiate(conn, 6, nil, nil), "negotiate")
  for _, name in ipairs({ "SMFIP_NR_CONN", "SMFIP_NR_HELO", "SMFIP_NR_RCPT", "SMFIP_NR_HDR",
                          "SMFIP_NR_EOH", "SMFIP_NR_BODY", "SMFIP_HDR_LEADSPC" }) do
    mt.echo("negotiated " .. name .. " = " .. tostring(mt.test_option(conn, _G[name])))
  end
  -- MAIL needs no answer (the default policy never refuses at MAIL: spf_fail_at_mail =
  -- accept), and no stage we send is switched off.
  assert(mt.test_option(conn, SMFIP_NR_MAIL), "SMFIP_NR_MAIL not negotiated")
  assert(not mt.test_option(conn, SMFIP_NOHELO), "SMFIP_NOHELO negotiated")
  assert(not mt.test_option(conn, SMFIP_NOHDRS), "SMFIP_NOHDRS negotiated")
  assert(not mt.test_option(conn, SMFIP_NOBODY), "SMFIP_NOBODY negotiated")
  return conn
end

-- A new SMTP client: connect macros, conninfo, HELO.
function common.client(conn, name, ip, helo)
  common.ok(mt.macro(conn, SMFIC_CONNECT, "j", "mx.test.example", "{daemon_name}", "smtpd"),
            "connect macros")
  common.ok(mt.conninfo(conn, name, ip), "conninfo")
  assert(mt.getreply(conn) == SMFIR_CONTINUE, "connect not continued")
  common.ok(mt.helo(conn, helo), "helo")
  assert(mt.getreply(conn) == SMFIR_CONTINUE, "HELO not continued")
end

-- Reads a CRLF message file into header fields { name, value } and the body. A folded field's
-- lines are joined with LF, as Postfix hands them to a milter.
function common.read_message(path)
  local f = assert(io.open(path, "rb"))
  local raw = f:read("*a")
  f:close()
  local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
  if head == nil then
    error(path .. ": no empty line after the header")
  end
  local fields = {}
  for line in (head .. "\r\n"):gmatch("(.-)\r\n") do
    if line:match("^[ \t]") then
      fields[#fields].value = fields[#fields].value .. "\n" .. line
    else
      local name, value = line:match("^([^:]+):(.*)$")
      fields[#fields + 1] = { name = name, value = value }
    end
  end
  return fields, body
end

-- One message up to (not including) end of message: MAIL, RCPT, header, EOH, body.
function common.transaction(conn, queue_id, sender, path)
  common.ok(mt.macro(conn, SMFIC_MAIL, "i", queue_id), "MAIL macros")
  common.ok(mt.mailfrom(conn, "<" .. sender .. ">"), "mailfrom")
  assert(mt.getreply(conn) == SMFIR_CONTINUE, "MAIL not continued")
  common.ok(mt.rcptto(conn, "<bob@example.net>"), "rcptto")
  local fields, body = common.read_message(path)
  -- Without SMFIP_HDR_LEADSPC the MTA drops the space after the colon.
  local leading_space = mt.test_option(conn, SMFIP_HDR_LEADSPC)
  for _, field in ipairs(fields) do
    local value = field.value
    if not leading_space then
      value = value:gsub("^ ", "", 1)
    end
    common.ok(mt.header(conn, field.name, value), "header " .. field.name)
  end
  common.ok(mt.eoh(conn), "eoh")
  common.ok(mt.bodystring(conn, body), "body")
end

function common.contains(text, piece)
  return text ~= nil and text:find(piece, 1, true) ~= nil
end

return common
