"""SureAliveD: IPVS real-server health checker and kernel table synchroniser."""

__version__ = "2.0.0"
