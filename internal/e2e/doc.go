// Package e2e holds the end-to-end test of the whole system: real pages submitted with the
// pero CLI go through detect -> recognize -> out in function containers that a real
// pero-watchdog launches from an image the test builds, on the real RabbitMQ, ZooKeeper, FTP
// and Docker engine; the results are downloaded and scored against the ground truth.
package e2e
