// Package engine dials the Docker engine for the watchdog's backends (docker and swarm).
package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/docker/client"
)

// ErrUnreachable: the engine did not answer when the backend was made.
var ErrUnreachable = errors.New("docker engine unreachable")

// Dial returns a client for the engine the environment names (DOCKER_HOST and friends, else
// the local socket), with the API version already negotiated: the client reads its version
// unguarded in some calls, so negotiating lazily, under concurrent first calls, races.
func Dial() (*client.Client, error) {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	c.NegotiateAPIVersion(ctx)
	return c, nil
}
