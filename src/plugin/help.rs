//! The `Examples:` section of each subcommand's `--help`.

pub const STATUS: &str = "\
Examples:
  kubectl kaizen status canary/checkout            # KIND/NAME
  kubectl kaizen status canary checkout            # KIND NAME
  kubectl kaizen status checkout                   # a name only one kind has here
  kubectl kaizen status canary/checkout -w         # follow it: redrawn in place, exit code on the end state
  kubectl kaizen status inc/db-outage -o yaml      # the object itself
  kubectl kaizen status ai/add-retries -o view-json  # the computed view as data";

pub const GET: &str = "\
Examples:
  kubectl kaizen get                               # every Incident, ActionItem and Canary here
  kubectl kaizen get -A                            # in every namespace
  kubectl kaizen get canaries -l team=payments     # by label
  kubectl kaizen get canary checkout -w            # its row and tree of pods, kept current
  kubectl kaizen get inc -o name                   # incident.kaizen.dev/NAME per line
  kubectl kaizen get -o wide                       # with images, linked objects and status messages";

pub const PROMOTE: &str = "\
Examples:
  kubectl kaizen promote checkout                  # end the current step (pause or weight) now
  kubectl kaizen promote checkout --full           # skip every remaining step and promote";

pub const SKIP: &str = "\
Examples:
  kubectl kaizen skip checkout                     # end the current pause, timed or not";

pub const ABORT: &str = "\
Examples:
  kubectl kaizen abort checkout                    # roll back now";

pub const RETRY: &str = "\
Examples:
  kubectl kaizen retry checkout                    # roll the rolled-back revision out again";

pub const RESUME: &str = "\
Examples:
  kubectl kaizen resume checkout                   # lift spec.paused, or end a pause waiting for a human";

pub const PAUSE: &str = "\
Examples:
  kubectl kaizen pause checkout                    # hold the rollout where it is (spec.paused: true)";

pub const RESTART: &str = "\
Examples:
  kubectl kaizen restart checkout                  # delete the stable pods one at a time (N-1 at worst)";

pub const UNDO: &str = "\
Examples:
  kubectl kaizen undo checkout                     # the target back to the stable revision's template
  kubectl kaizen undo checkout --to-revision 3     # the template of its ReplicaSet revision 3";

pub const OVERDUE: &str = "\
Examples:
  kubectl kaizen overdue                           # overdue follow-ups here, by owner
  kubectl kaizen overdue -A -l team=payments       # everywhere, one team's
  kubectl kaizen overdue -o name                   # actionitem.kaizen.dev/NAME per line";

pub const REPORT: &str = "\
Examples:
  kubectl kaizen report                            # the last 30 days here
  kubectl kaizen report -A --since 12w -o json     # a quarter, every namespace, as data";

pub const POSTMORTEM: &str = "\
Examples:
  kubectl kaizen postmortem checkout-errors > postmortem.md";

pub const VERSION: &str = "\
Examples:
  kubectl kaizen version                           # plugin, operator and CRD versions
  kubectl kaizen version --client                  # the plugin's alone, without a cluster";

pub const COMPLETION: &str = "\
Examples:
  source <(kubectl-kaizen completion bash)         # completes kubectl-kaizen in this shell
  kubectl-kaizen completion zsh > \"${fpath[1]}/_kubectl-kaizen\"
  kubectl-kaizen completion fish > ~/.config/fish/completions/kubectl-kaizen.fish";

pub const BACKLOG: &str = "\
Examples:
  kubectl kaizen backlog                           # open improvements here, highest score first
  kubectl kaizen backlog -A --component deploys    # one component's, everywhere
  kubectl kaizen backlog -o json                   # as data (score, rationale, state, deadline)";

pub const FEEDBACK: &str = "\
Examples:
  export KAIZEN_FEEDBACK_URL=https://kaizen.example/feedback KAIZEN_FEEDBACK_TOKEN=...
  kubectl kaizen feedback --component deploys \"Deploys take 14 minutes\"
  kubectl kaizen feedback --component docs --impact high --link https://wiki/x \"Runbook for DB failover is wrong\"";
