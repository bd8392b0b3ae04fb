"""OpenSOP: a durable engine for Standard Operating Procedures."""
