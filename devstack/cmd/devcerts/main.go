// Command devcerts writes the dev CA and the service and client certificates into a folder
// (default .tmp/stack/certs), keeping whatever is still valid. See package devca.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/securemsg/securemsg/devstack/internal/devca"
)

func main() {
	dir := flag.String("dir", ".tmp/stack/certs", "folder for ca.pem, <name>.pem and <name>-key.pem")
	flag.Parse()
	written, err := devca.Ensure(*dir, time.Now())
	if err != nil {
		fmt.Fprintln(os.Stderr, "devcerts:", err)
		os.Exit(1)
	}
	if len(written) == 0 {
		fmt.Printf("devcerts: %s is current\n", *dir)
		return
	}
	fmt.Printf("devcerts: wrote %d files in %s\n", len(written), *dir)
}
