"""The web dashboard: rollouts, their steps and traffic, and each AnalysisRun's canary report.

Served by the operator (`herdsman run --dashboard-port`) or locally with the user's kubeconfig
(`kubectl herdsman dashboard`). `watch` feeds `hub` from list-and-watch streams, `views` and
`report` shape what the page shows (plots are plotly figures), `server` serves it all.
"""
