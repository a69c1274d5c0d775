"""How attempts execute: the backend interface, chosen by name, and the local backend."""
