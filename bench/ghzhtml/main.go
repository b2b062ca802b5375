// Command ghzhtml renders a ghz JSON report (ghz -O json) as ghz's own HTML
// report, so one load run yields both without running the load twice.
//
//	ghzhtml report.json > report.html
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/bojand/ghz/printer"
	"github.com/bojand/ghz/runner"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ghzhtml REPORT.json > REPORT.html")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var report runner.Report
	if err := json.Unmarshal(raw, &report); err != nil {
		fmt.Fprintln(os.Stderr, "not a ghz JSON report:", err)
		os.Exit(1)
	}
	p := printer.ReportPrinter{Out: os.Stdout, Report: &report}
	if err := p.Print("html"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
