"""The ways in: the RunPod handler and the HTTP server, both over one Service."""
