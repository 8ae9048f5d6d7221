package supervisor

import (
	"bytes"
	"context"
	"os/exec"
)

// combinedOutput is exec.Cmd.CombinedOutput, the child killed when ctx ends
// (with ctx's error then).
func combinedOutput(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	stop()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return b.Bytes(), err
}
