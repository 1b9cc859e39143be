"""Alert delivery: PagerDuty, Slack and a signed webhook, paging once per incident.

- `events`: what an alert says, built from cost_anomalies, reconciliation and failed runs
- `channels`: the three channels, configured from the environment only
- `http`: POST with retries on 429 and 5xx
- `log`: the delivery log in the warehouse (what makes delivery idempotent)
- `dispatch`: what is due on which channel, cooldown, digest
- `asset`: the `alert_delivery` asset and its job
"""
