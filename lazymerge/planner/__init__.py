"""Request -> Plan: validation (MergeRequest), source discovery (SQL over /meta, or a scan), candidate
pairs, windows, culling and time groups."""
