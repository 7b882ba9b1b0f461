"""A sans-IO SIP stack (RFC 3261): messages, parsing and digest auth, no sockets."""
