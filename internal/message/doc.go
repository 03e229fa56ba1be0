// Package message holds the pero wire format (pero.proto, compatible field by field with
// DCGM/pero-worker) and the helpers every component uses to move a request between stages:
// decoding with validation, popping the current stage, appending a StageLog and marking
// the terminal status.
//
// Regenerate pero.pb.go with `make proto`.
package message
