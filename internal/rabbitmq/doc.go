// Package rabbitmq is the adapter to the RabbitMQ broker that carries the processing requests: one
// durable classic queue per stage (declared exactly as the original pero-worker does, with
// x-max-priority 1), a dead-letter queue "<stage>.dead" beside it, publishing with publisher
// confirms and mandatory routing, consumers with a prefetch window, a supervisor that re-dials
// after the broker goes away, and a small client of the management HTTP API for the counts AMQP
// cannot give (unacknowledged messages, rates).
//
// Credentials never appear in errors or logs: addresses are shown through MaskURL.
package rabbitmq
