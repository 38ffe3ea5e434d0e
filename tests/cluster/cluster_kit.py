"""Settings the cluster fixture and its tests share (imported by name, like resilience_kit)."""

# Short leases, so that a killed replica's replies are reaped within seconds (docs/deploy.md:
# the bound is LEASE_TTL_S + REAPER_INTERVAL_S after the owner's last checkpoint), yet long
# enough that a checkpoint delayed by 200 concurrent requests on 2 cores still renews in time.
LEASE_TTL_S = 6.0
REAPER_INTERVAL_S = 1.0
RATE_LIMIT_PER_MINUTE = 400
