"""chatkeep side by side with the libraries and apps a user would otherwise pick (``make
bench-peers``, ``python -m bench.peers``). Not part of ``python -m bench``: the peers need their
own virtualenvs (about 3 GB for Open WebUI), made on first use under the bench scratch space
(``$CHATKEEP_BENCH_SCRATCH``, default ``/tmp/chatkeep-bench``). See docs/performance.md."""
