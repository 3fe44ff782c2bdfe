#!/usr/bin/env bash
# Observe first, enforce on evidence: learn what the support agent normally does, review it as a
# policy file, then enforce it and watch an injected bulk export get blocked.
#
#   bash examples/learn_then_enforce.sh [WORKDIR]      (default: a new temporary directory)
#
# PYTHON and AGENTGUARD name the interpreter and the command line to use (default: python and
# agentguard from PATH).
set -euo pipefail

PYTHON=${PYTHON:-python}
AGENTGUARD=${AGENTGUARD:-agentguard}
WORK=${1:-$(mktemp -d)}
cd "$(dirname "$0")/.."
mkdir -p "$WORK"
PROFILE="$WORK/support-agent.json"
POLICY="$WORK/support-agent-policy.yaml"

echo "== 1. learn: 30 ordinary tickets; the profile is written when the agent stops"
"$PYTHON" examples/support_agent.py --mode learn --profile "$PROFILE" --conversations 30

echo "== 2. has learning seen enough? (--check exits 1 while a tool is still learning)"
"$AGENTGUARD" profile status "$PROFILE" --check
"$AGENTGUARD" profile show "$PROFILE" --tool query_customers

echo "== 3. turn the profile into a policy file a person can review and keep in git"
"$AGENTGUARD" profile to-policy "$PROFILE" -o "$POLICY"
"$AGENTGUARD" policy check "$POLICY"
grep -n -A3 "limit learned" "$POLICY"

echo "== 4. enforce: new ordinary tickets pass, the injected export is blocked"
# The generated policy holds the explicit rules; the profile adds what no rule can say (calls per
# turn, tool order, decision drift). Either one alone blocks this attack.
"$PYTHON" examples/support_agent.py --mode enforce --policy "$POLICY" --profile "$PROFILE" \
    --conversations 5 --seed 2024 --attack

echo "done: profile $PROFILE, policy $POLICY"
