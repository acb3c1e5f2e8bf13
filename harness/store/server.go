package store

import "context"

// Server is an S3 endpoint this process runs and can stop and start again:
// tests and the sim bench use it to take the endpoint down under a client.
//
// Stop takes the endpoint down: it stops listening, so that new
// connections are refused, and ends every open connection, so that
// requests in flight fail. Start brings it back on the same address, with
// the same credentials and the same objects, so that a client made from
// Config before Stop works again without being rebuilt. Both do nothing
// when the endpoint is already in the state asked for. Close stops the
// endpoint for good; Start then fails.
type Server interface {
	// Config returns a configuration with which New reaches the endpoint.
	// It does not change across Stop and Start.
	Config() Config
	Stop(ctx context.Context) error
	Start(ctx context.Context) error
	Close() error
}

var (
	_ Server = (*Embedded)(nil)
	_ Server = (*MinIO)(nil)
)
