// Package watchdog watches the stages' queue backlogs and runs short-lived function containers
// for them: it launches containers when work waits and leaves them to exit by themselves (the
// runner exits when its queue stays empty), reaping them afterwards.
//
// Every poll (Config.PollInterval, 1 s by default) is four steps, each in a file of its own:
//
//   - observe.go reads the world: the stages and their measured seconds per message from
//     ZooKeeper, ready messages and consumers by a passive declare, unacknowledged messages from
//     the management API (or, without one, the in-flight counts the runners publish), the
//     runners' status nodes (starting, running, draining), and the containers of the scope from
//     the Backend, whichever watchdog launched them.
//   - act.go reaps what exited (exit code and last log lines recorded, Health updated, container
//     removed), turns the observation into Decide's input, launches the plan's containers and
//     publishes metrics and the status `pero status` shows.
//   - decide.go is the pure decision, with health.go the pure failure record: how many
//     containers each stage wants from its backlog (ready + unacknowledged) x seconds per message
//     / target drain time, within min..max and one per batch of backlog; how the CPU slots and
//     the GPUs of the ledger are shared (administrative priority plus one point per aging interval
//     waited, then fewest containers); and the backoff of stages whose containers fail.
//   - leader.go makes one watchdog of several act: the others stand by and take over within the
//     ZooKeeper session timeout of a leader's death, at once after its clean stop.
//
// # Never twice, never killed
//
// Containers that were launched and do not consume yet count as starting, and unacknowledged
// messages count as backlog that the running containers hold: a backlog gets its containers once,
// however long they take to start. Decide never asks for fewer containers: a stage whose backlog
// shrinks lets its runners finish their batches and exit on their idle timeout, so a busy
// container is never stopped. A new leader adopts the containers it finds by their scope label.
//
// # Failures
//
// A container that exits non-zero within BackoffPolicy.QuickExit of its launch, or with the
// runner's configuration or model exit code at any time, counts against its stage; containers
// failing together count once. The stage then waits a doubling, jittered backoff and runs one
// probe container at a time until one consumes for QuickExit or exits 0. A new configuration
// version of the stage forgives its failures; so does a change of leader (the record lives in
// the leader's memory).
//
// # Labels
//
// Each container carries pero.scope (the deployment), pero.stage, pero.config-version,
// pero.watchdog (who launched it), pero.gpus (its devices, from which the GPU ledger is rebuilt
// every poll) and pero.created. Its name is its runner's PERO_CONTAINER_ID, which names the
// runner's status node.
//
// # Limits
//
// A stage with min_containers above zero keeps that many runners, but each still exits after its
// idle timeout and is relaunched: give such stages a long idle_timeout. The Docker backend runs
// containers on the watchdog's own engine; the swarm backend (package watchdog/swarm) documents
// what changes on a swarm.
package watchdog
