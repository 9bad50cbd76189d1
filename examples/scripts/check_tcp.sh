#!/bin/sh
# exec tester example: check_tcp.sh ADDR PORT [-q|-v]; exit 0 when a TCP connect succeeds.
addr=$1 port=$2
exec timeout 2 bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null
