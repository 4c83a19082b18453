#!/bin/sh
# RUSTC_WRAPPER for fuzz/run.sh: adds the coverage instrumentation ($AUTHMILTER_SANCOV) to
# authmilter and the parsers it hands hostile bytes to, and to nothing else. The runtime
# under the sessions (tokio, hickory, std's hashing...) stays uninstrumented: its coverage is
# noise to the fuzzer (scheduling order), and libFuzzer collects every counter hit on each
# run, so instrumenting it cost most of the time of a session target (measured: half of the
# time of message_verify went to collecting features).
rustc="$1"
shift
case " $* " in
*" --crate-name authmilter "* | *" --crate-name authmilter_fuzz "* | \
    *" --crate-name mail_auth "* | *" --crate-name mail_parser "* | \
    *" --crate-name smtp_proto "* | *" --crate-name quick_xml "* | \
    *" --crate-name zip "* | *" --crate-name flate2 "* | *" --crate-name miniz_oxide "* | \
    *" --crate-name toml "* | *" --crate-name toml_edit "* | *" --crate-name toml_datetime "* | \
    *" --crate-name winnow "* | *" --crate-name ipnet "* | *" --crate-name base64ct "* | \
    *" --crate-name der "* | *" --crate-name spki "* | *" --crate-name pkcs1 "* | \
    *" --crate-name pkcs8 "* | *" --crate-name pem_rfc7468 "*)
    # shellcheck disable=SC2086 # one flag per word
    exec "$rustc" "$@" $AUTHMILTER_SANCOV
    ;;
esac
exec "$rustc" "$@"
