// Package zookeeper is the store of pero's configuration in ZooKeeper: the server lists, the stages
// with their configuration and settings, and the per-container processing statistics. It keeps the
// original pero-worker's layout and encodings, so the original's tools and workers can share a
// ZooKeeper with this code, and adds new nodes beside them.
//
// # Layout
//
// Under the root (default /pero):
//
//	worker/config/mq_servers/<host:port>             one empty child per RabbitMQ server
//	worker/config/mq_monitoring_servers/<host:port>  one per RabbitMQ management API
//	worker/config/ftp_servers/<host:port>            one per FTP server
//	queue/<stage>                                    the stage; its data is empty
//	queue/<stage>/config                             config.ini text (UTF-8)
//	queue/<stage>/config_path                        model archive path on the FTP server, "" = none
//	queue/<stage>/config_version                     configuration version text
//	queue/<stage>/administrative_priority            big-endian unsigned integer
//	queue/<stage>/avg_msg_time                       seconds per message as Python float.hex() text, "" = unknown
//	queue/<stage>/waiting_since                      the original watchdog's ISO time, "" = not waiting (created, not used)
//	queue/<stage>/model_sha256                       new: hex SHA-256 of the model archive, "" = unchecked
//	queue/<stage>/settings                           new: Settings as JSON
//	queue/<stage>/stats/<container>                  new: one Timing as JSON per runner container
//
// # Encodings of the original
//
// Found in DCGM/pero-worker (scripts/stage_config_manager.py, worker/worker.py,
// worker/worker_watchdog.py, libs/worker_functions/constants.py):
//
//   - administrative_priority is written as int.to_bytes(n, sys.getsizeof(n), 'big'): big-endian,
//     and the length is the size of the Python int object (24 bytes for 0 and 28 bytes up to 2^30-1
//     on the Python 3.9 of its Debian bullseye images; 28 for 0 on Python 3.11 and later). It is
//     read with int.from_bytes, so any length is valid; a node made by ensure_path is empty and
//     reads as 0. This package writes the Python 3.9 lengths and reads any length.
//   - avg_msg_time is written with float(x).hex() ("0x1.8000000000000p+1") and read with
//     float.fromhex; an empty node means no measurement (the original watchdog then assumes 1s).
//     The original worker folded a batch into it, under a ZooKeeper lock, as new + old/2; this
//     package keeps an exponentially weighted average by compare-and-set instead.
//   - config_version is free text, by default datetime.now(timezone.utc).isoformat(), as
//     "2024-05-01T12:34:56.123456+00:00" (no fraction when the microseconds are zero).
//   - Stage creation makes config, config_path, avg_msg_time, waiting_since and
//     administrative_priority; the original watchdog skips a stage lacking any of the last three.
//     Server lists are one child per server named host:port.
//   - The original authenticated with SASL DIGEST-MD5 and left ACLs open; this package uses
//     ZooKeeper digest authentication with a digest ACL when Config.Auth is set.
//
// # Sessions
//
// The client library reconnects by itself and, after a session expiry, opens a new session by
// itself; every method keeps working across both, and WatchStage re-arms its watches. Expiry
// deletes the session's ephemeral nodes: whoever creates ephemeral nodes through Conn re-creates
// them when SessionEvents delivers zk.StateHasSession and Conn().SessionID() is not the session
// they were created in.
//
// Every method honours its ctx: a cancelled call returns at once, though a write already sent may
// still be applied.
package zookeeper
