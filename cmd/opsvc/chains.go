package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opsvc/opsvc/supervisor/registry"
)

// chains is `opsvc chains [ls [--all]|show ID|lineage ID] [--json]`; ls --all lists the archived
// chains too.
func (c *cli) chains() error {
	sub := "ls"
	args := c.args.pos
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "ls", "list":
		if len(args) != 0 {
			return fail(exitUsage, "chains ls takes no arguments")
		}
		path := "/v1/chains"
		if c.args.has("all") {
			path += "?all=1"
		}
		resp, err := c.do("GET", path, nil, nil)
		if err != nil {
			return asExit("chains ls", err)
		}
		defer resp.Body.Close()
		if c.args.has("json") {
			_, err := io.Copy(c.stdout, resp.Body)
			return err
		}
		var out registry.ChainList
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return err
		}
		printChainTable(c.stdout, out.Chains, nil)
		return nil
	case "show", "lineage":
		if len(args) != 1 {
			return fail(exitUsage, "chains %s: name one chain id (opsvc chains ls lists them)", sub)
		}
		path := "/v1/chains/" + url.PathEscape(args[0])
		if sub == "lineage" {
			path += "/lineage"
		}
		resp, err := c.do("GET", path, nil, nil)
		if err != nil {
			if codeFor(err) == exitNoUnit {
				return fail(exitNoUnit, "chains %s %s: no such chain (opsvc chains ls lists them)", sub, args[0])
			}
			return asExit("chains "+sub, err)
		}
		defer resp.Body.Close()
		if c.args.has("json") {
			_, err := io.Copy(c.stdout, resp.Body)
			return err
		}
		if sub == "lineage" {
			var out registry.Lineage
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				return err
			}
			sums := make([]registry.ChainSummary, len(out.Lineage))
			depth := make([]int, len(out.Lineage))
			for i, l := range out.Lineage {
				sums[i], depth[i] = l.ChainSummary, l.Depth
			}
			printChainTable(c.stdout, sums, depth)
			return nil
		}
		var ch registry.Chain
		if err := json.NewDecoder(resp.Body).Decode(&ch); err != nil {
			return err
		}
		printChain(c.stdout, &ch)
		return nil
	}
	return fail(exitUsage, "chains: unknown subcommand %q (ls, show ID, lineage ID)", sub)
}

func money(v float64) string { return fmt.Sprintf("$%.2f", v) }

func dur(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

func printChainTable(w io.Writer, chains []registry.ChainSummary, depth []int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// On a fleet ([cluster] in opsvc.toml) every chain names the host that ran it.
	fleet := false
	for _, c := range chains {
		fleet = fleet || c.Host != ""
	}
	if fleet {
		fmt.Fprintln(tw, "ID\tUNIT\tHOST\tSTATUS\tSESSIONS\tTURNS\tCOST\tDURATION\tSTARTED\tRESTARTED FROM")
	} else {
		fmt.Fprintln(tw, "ID\tUNIT\tSTATUS\tSESSIONS\tTURNS\tCOST\tDURATION\tSTARTED\tRESTARTED FROM")
	}
	for i, c := range chains {
		id := c.ID
		if depth != nil {
			id = strings.Repeat("  ", depth[i]) + id
		}
		from := c.RestartedFrom
		if from == "" {
			from = "-"
		}
		unit := c.Unit
		if fleet {
			host := c.Host
			if host == "" {
				host = "-"
			}
			unit += "\t" + host
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", id, unit, c.Status, c.Sessions, c.TotalTurns,
			money(c.TotalCostUSD), dur(c.TotalDurationMS), c.StartedAt.Local().Format("2006-01-02 15:04:05"), from)
	}
	tw.Flush()
	if len(chains) == 0 {
		fmt.Fprintln(w, "(no chains yet: they appear when an orchestrator unit runs)")
	}
}

func printChain(w io.Writer, c *registry.Chain) {
	fmt.Fprintf(w, "Chain %s (%s)\n", c.ID, c.Status)
	fmt.Fprintf(w, "  Unit:     %s\n  Task:     %s\n  Project:  %s\n", c.Unit, c.Task, c.ProjectDir)
	if c.Host != "" {
		fmt.Fprintf(w, "  Host:     %s\n", c.Host)
	}
	if c.RestartedFrom != "" {
		fmt.Fprintf(w, "  Resumed:  from %s\n", c.RestartedFrom)
	}
	if c.Reason != "" {
		fmt.Fprintf(w, "  Reason:   %s\n", c.Reason)
	}
	if c.Branch != "" {
		fmt.Fprintf(w, "  Branch:   %s\n", c.Branch)
	}
	budget := money(c.Config.MaxBudgetUSD)
	if c.Config.MaxBudgetUSD < 0 {
		budget = "unlimited"
	}
	fmt.Fprintf(w, "  Model:    %s (max %d turns, %d continuations, budget %s)\n", c.Config.Model, c.Config.MaxTurns, c.Config.MaxContinuations, budget)
	fmt.Fprintf(w, "  Started:  %s, updated %s\n", c.StartedAt.Local().Format(time.DateTime), c.UpdatedAt.Local().Format(time.DateTime))
	fmt.Fprintf(w, "  Totals:   %d sessions, %d turns, %s, %s\n\n", len(c.Sessions), c.TotalTurns, money(c.TotalCostUSD), dur(c.TotalDurationMS))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTATUS\tMODEL\tTURNS\tCOST\tTOKENS IN/OUT\tDURATION\tHANDOFF\tCOMMIT\tERROR")
	for _, s := range c.Sessions {
		handoff := "-"
		if s.HandoffComplete {
			handoff = "yes"
		}
		errText := s.Error
		if errText == "" {
			errText = "-"
		}
		model, commit := s.Model, s.Commit
		if model == "" {
			model = "-"
		}
		if commit == "" {
			commit = "-"
		} else if len(commit) > 12 {
			commit = commit[:12]
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", s.Index, s.Status, model, s.Turns, money(s.CostUSD), s.InputTokens, s.OutputTokens, dur(s.DurationMS), handoff, commit, errText)
	}
	tw.Flush()
	ran := false
	for _, s := range c.Sessions {
		if s.Command != "" {
			fmt.Fprintf(w, "\nSession %d ran: %s", s.Index, s.Command)
			ran = true
		}
	}
	if ran {
		fmt.Fprintln(w)
	}
}
