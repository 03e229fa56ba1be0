// Package reliability holds the system-level suites behind RELIABILITY.md: fault injection (a
// function container killed mid-batch, RabbitMQ and ZooKeeper restarted under load, the file
// server down while containers start, a full model cache), bad input from a raw publisher, the
// check that no log or error shows a password, and the load benchmark (`make bench-load`).
//
// The suites run real pero-watchdog processes that launch real function containers, against a
// RabbitMQ, ZooKeeper and FTP server of their own: scripts/services.sh starts them on free ports
// in a temporary directory (with distinctive passwords), so that stopping and restarting them
// never disturbs the shared development services other packages test against. The package has
// no code of its own outside its tests.
package reliability
