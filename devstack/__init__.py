"""Local development stack: a real redis-server, a worker and the API in one command."""
