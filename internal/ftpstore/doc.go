// Package ftpstore keeps the model archives of the stages on an FTP server.
//
// Uploads go to "<name>.part-<random>" beside the target and are renamed over it only when
// complete, so a runner never fetches half an archive. Downloads land in a temporary file beside
// the destination, are checked against the expected SHA-256, synced and renamed into place.
// Every operation opens its own short-lived connection (runners start, fetch once and go),
// retries the failures that pass (refused connections, timeouts, 4xx replies) with backoff, and
// gives up at once on the ones that do not (wrong credentials: ErrAuth, missing file: ErrNotFound).
package ftpstore
