package agent

import (
	"context"
	"sync"
	"time"

	"github.com/durehq/dure/internal/api"
)

// defaultHeartbeatInterval is used when a server does not say.
const defaultHeartbeatInterval = 5 * time.Second

// heartbeatLoop registers the node, then heartbeats at the interval the
// server asked for. A heartbeat answered with "reregister" or "not found"
// (the server forgot the node or declared it down) registers again with
// the same session ID: the process did not restart.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	var once sync.Once
	bo := newBackoff(100*time.Millisecond, 10*time.Second, a.seed+3)
	for ctx.Err() == nil {
		resp, ok := a.register(ctx, bo)
		if !ok {
			return
		}
		once.Do(func() { close(a.registered) })
		interval := time.Duration(resp.HeartbeatInterval)
		if interval <= 0 {
			interval = defaultHeartbeatInterval
		}
		a.heartbeat(ctx, interval)
	}
}

// register retries until a server accepts the registration or ctx ends.
func (a *Agent) register(ctx context.Context, bo *backoff) (api.RegisterResponse, bool) {
	reg := api.NodeRegistration{
		Name:         a.cfg.Name,
		Address:      a.advertise,
		Capacity:     a.detected.Capacity,
		GPUs:         a.detected.GPUs,
		Labels:       a.cfg.Labels,
		AgentVersion: a.cfg.Version,
		SessionID:    a.sessionID,
	}
	for {
		var resp api.RegisterResponse
		err := a.servers.do(ctx, "register", 10*time.Second, func(ctx context.Context, c *api.Client) error {
			var err error
			resp, err = c.RegisterNode(ctx, reg)
			return err
		})
		if err == nil {
			bo.reset()
			a.log.Info("registered", "heartbeat_interval", time.Duration(resp.HeartbeatInterval), "session", a.sessionID)
			return resp, true
		}
		if ctx.Err() != nil {
			return resp, false
		}
		d := bo.next()
		a.log.Warn("registration failed; will retry", "retry_in", d, "err", err)
		if !sleep(ctx, d) {
			return resp, false
		}
	}
}

// heartbeat sends heartbeats until ctx ends or a server asks the node to
// register again. A heartbeat that no server answers is simply tried again
// at the next tick: missing a few is what the server's timeout allows for.
func (a *Agent) heartbeat(ctx context.Context, interval time.Duration) {
	hb := api.Heartbeat{Name: a.cfg.Name, SessionID: a.sessionID}
	timeout := min(max(interval, time.Second), 10*time.Second)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var resp api.HeartbeatResponse
		err := a.servers.do(ctx, "heartbeat", timeout, func(ctx context.Context, c *api.Client) error {
			var err error
			resp, err = c.Heartbeat(ctx, hb)
			return err
		})
		switch {
		case ctx.Err() != nil:
			return
		case api.IsNotFound(err):
			a.log.Warn("server does not know this node; registering again")
			return
		case err != nil:
			a.log.Warn("heartbeat failed on every server", "err", err)
		case resp.Reregister:
			a.log.Info("server asked this node to register again")
			return
		}
		t.Reset(interval)
	}
}
