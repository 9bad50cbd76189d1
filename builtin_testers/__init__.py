"""The testers shipped with SureAliveD: tcp, http, dns, exec, none (no-test) and lua."""
