"""Notifications: per-Rollout subscriptions (annotations, Argo's style) to release triggers,
delivered in the background through Apprise (Slack, Teams, PagerDuty, Opsgenie, email, webhooks).

`subscriptions` and `messages` are pure; `config` reads the services once configured in a
ConfigMap and a Secret; `deliver` sends with retries on a thread of its own, so a slow or down
receiver never holds a reconcile.
"""
