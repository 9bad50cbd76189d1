#!/bin/sh
# Notifier example: arguments are notify=UP|DOWN vname= vaddr= vport= vproto= vfwmark=
# (and rname= raddr= rport= for the real notifier). Logs them to syslog.
exec logger -t surealived-notify -- "$@"
