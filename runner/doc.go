// Package runner is the runtime inside every function container (command pero-runner): it
// serves one stage, taking batches from the stage's RabbitMQ queue, running the stage's
// function on them, forwarding every result to the next stage, and exiting when work runs out
// so that the watchdog can scale the stage to zero.
//
// # Lifecycle
//
// Start connects to ZooKeeper, reads the stage (queue/<stage>: config, config_path,
// config_version, model_sha256, settings), creates the runner's status node, makes the model
// ready in the host's cache (below), initialises the function once, connects to RabbitMQ (the
// brokers of worker/config/mq_servers), declares the stage's queue and its dead-letter queue
// and consumes with prefetch = batch size. A failure there exits with a code saying what
// failed (below) before any message is taken.
//
// The loop fills a batch from what has arrived, waiting at most PERO_BATCH_WAIT after the first
// message, runs the function with the stage's batch_timeout, and forwards each page: a
// StageLog is appended (host, stage, start, end, status, config version, enqueued, attempt), the
// stage is popped (message.Advance) and the request is published to the next stage's queue
// (persistent, mandatory, same priority, publisher confirms); the delivery is acked only once
// the broker confirmed. A page the function failed goes straight to the output stage with
// status Failed and its error (message.Fail), as in the original. When the next stage has no
// queue, or the result is over the broker's max_message_size, the page fails to the output stage
// with that error; when the output stage has no queue either, or the failure is too large as
// well, it goes to the dead-letter queue. A page cut short by the batch timeout fails; one cut
// short by the end of the grace period is handed back.
//
// # Exit rules
//
//   - The queue stayed empty for idle_timeout, max_batches batches were processed, the runner
//     ran for max_lifetime, the stage's config_version changed (a new runner takes the new
//     model) or the stage was deleted: finish the current batch, hand back (nack, requeue)
//     everything prefetched but not started, exit 0.
//   - SIGTERM or SIGINT: cancel the consumer at once (prefetched messages go back to the
//     queue), let the current batch finish within PERO_GRACE_PERIOD, then cancel it and hand
//     back its unfinished pages, exit 0. A second signal cancels the batch at once. The
//     watchdog gives containers a stop timeout above the grace period (grace + 15s).
//   - RabbitMQ lost: reconnect for up to PERO_CONNECT_TIMEOUT (the batch in flight is
//     redelivered by the broker), else exit ExitUnavailable.
//
// Exit codes (the watchdog backs off on the non-zero ones):
//
//	0  ExitOK           finished by a rule above
//	1  ExitInternal     a bug
//	2  ExitConfig       bad environment or stage configuration, unknown function, output stage,
//	                    no broker registered, queue declared with other arguments or deleted
//	3  ExitUnavailable  ZooKeeper, RabbitMQ or the file server unreachable or refusing the login
//	4  ExitModel        model archive missing, failing its SHA-256, corrupt, unsafe or too large,
//	                    or the function failed to initialise; no message was taken
//	5  ExitFunction     the function panicked on 3 batches in a row, or ignored the end of its
//	                    context for 10s; the batch goes back to the queue and counts a delivery
//
// # Counting deliveries, dead letters
//
// Classic queues carry no delivery count, so the count travels in the message
// (ProcessingRequest.attempts, reset when the request moves on). The broker's redelivered flag
// says only that a message was unacknowledged when a runner died or handed it back, not whether
// it was being processed, so:
//
//   - A redelivered message with attempts 0 (it was in a batch, or prefetched) is republished to
//     the tail of the stage's queue with attempts 1 and the original acked after the confirm.
//     Every message of a crashed batch is counted once, since the culprit is not known.
//   - A message with attempts > 0 is a suspect and is always processed alone. Just before the
//     function runs, the runner records it in ZooKeeper (queue/<stage>/suspects/<key>, a
//     persistent node deleted once the outcome is settled).
//   - A redelivered suspect with a record killed the runner that processed it (or made the
//     function panic): its attempts are incremented the same way, or, when attempts+1 reaches
//     max_deliveries, it goes to the dead-letter queue. A redelivered suspect without a record
//     was only held in a prefetch window: it is processed as it is, not counted.
//
// So a poison page kills at most max_deliveries runners (one in its batch, the rest alone),
// the pages next to it are counted once and then processed alone, and nothing loops forever. A
// graceful hand-back (the exit rules) counts once for a message with attempts 0, which makes it
// a suspect processed alone; it is never dead-lettered for that.
//
// A body that does not decode, lacks stages or an input image, is addressed to another stage,
// or whose route ends at this stage goes to the dead-letter queue at once. Dead letters go to
// "<stage>.dead" exactly as received (so they can be replayed into the stage), original headers
// kept, with x-pero-reason (malformed, wrong-stage, no-next-stage, max-deliveries, unroutable,
// too-large), x-pero-error, x-pero-stage, x-pero-container, x-pero-deliveries and x-pero-dead-at.
//
// Delivery is at least once: a runner killed between a confirmed publish and its ack sends
// that page twice, at most one batch per kill. The request uuid identifies duplicates.
//
// # ZooKeeper nodes written
//
//	queue/<stage>/runners/<container>  ephemeral status node, JSON Status: state starting |
//	                                   running | draining, pid, version, function, batch_size,
//	                                   config_version, started, updated, batches, messages,
//	                                   failed, dead_lettered, in_flight. Written on every state
//	                                   change and every 2s;
//	                                   re-created after a session expiry; deleted on exit.
//	queue/<stage>/stats/<container>    the container's totals (messages, seconds) through
//	                                   zookeeper.Store.RecordTiming, which also folds
//	                                   avg_msg_time by compare-and-set; at most once per
//	                                   PERO_STATS_INTERVAL and once at exit. Seconds are
//	                                   measured per batch from the function call to the last
//	                                   ack, so they include forwarding, not waiting for work.
//	queue/<stage>/suspects/<key>       suspect records, above.
//
// # Model cache
//
// PERO_CACHE_DIR is shared by the containers of a host (a volume). A model is the archive at
// config_path on the first file server of worker/config/ftp_servers that has it, keyed by its
// SHA-256 (model_sha256; a stage of the original without one is downloaded on every start to
// learn it). It is verified, unpacked into tmp/ and renamed into models/<sha256>/ with its
// manifest beside it; zip, tar and tar.gz are told by content. Entries must be plain files or
// directories with relative paths inside the target: absolute paths, "..", backslashes, links,
// devices and pipes are refused, as are archives unpacking to more than PERO_MODEL_MAX_BYTES,
// PERO_MODEL_MAX_FILES entries or PERO_MODEL_MAX_RATIO times their size. A flock per model
// makes runners starting together wait for one download; each runner holds a shared lock while
// it uses the model, and models nobody holds are evicted least recently used first when the
// cache exceeds PERO_CACHE_MAX_BYTES. See Cache for the layout.
//
// # Environment
//
//	PERO_STAGE                     stage to serve (required)
//	PERO_CONTAINER_ID, HOSTNAME    the runner's name in ZooKeeper and the logs (required)
//	PERO_HOST_ID                   StageLog host_id (default: the container id)
//	PERO_ZOOKEEPER                 host:port list (127.0.0.1:2181)
//	PERO_ZK_ROOT                   root znode (/pero)
//	PERO_ZK_AUTH, _FILE            digest "user:password" (none)
//	PERO_MQ_USER, PERO_MQ_PASSWORD, PERO_MQ_PASSWORD_FILE   broker login (guest/guest)
//	PERO_MQ_VHOST                  virtual host (pero)
//	PERO_MQ_TLS, PERO_MQ_CA_FILE, PERO_MQ_TLS_SERVER_NAME   amqps
//	PERO_FTP_USER, PERO_FTP_PASSWORD, PERO_FTP_PASSWORD_FILE  file server login (pero)
//	PERO_FTP_TLS, PERO_FTP_CA_FILE, PERO_FTP_TLS_SERVER_NAME  explicit FTP TLS
//	PERO_CACHE_DIR                 model cache (/var/cache/pero)
//	PERO_CACHE_MAX_BYTES           cache budget (20GiB; K, M, G, T, Ki, Mi, Gi, Ti)
//	PERO_MODEL_MAX_BYTES, PERO_MODEL_MAX_RATIO, PERO_MODEL_MAX_FILES  unpacking limits (16GiB, 200, 100000)
//	PERO_GRACE_PERIOD              time to finish the batch after a signal (25s)
//	PERO_BATCH_WAIT                fill wait after a batch's first message (50ms)
//	PERO_CONNECT_TIMEOUT           patience with the services (60s)
//	PERO_STATS_INTERVAL            statistics and progress interval (5s)
//	PERO_FUNCTION, PERO_BATCH_SIZE, PERO_BATCH_TIMEOUT, PERO_IDLE_TIMEOUT, PERO_MAX_LIFETIME,
//	PERO_MAX_BATCHES, PERO_MAX_DELIVERIES   override the stage's settings
//	LOG_LEVEL, LOG_FORMAT          debug|info|warn|error (info); json|text (json)
//
// Logs are slog lines with stage and container on each, a component where it helps, batch
// sizes and timings; a progress line per stats interval; no credentials.
package runner
