package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/hubreplay/hubreplay/capture/anonymize"
)

// errLeaks makes verify exit 1 after it has listed what it found.
var errLeaks error = exitError{1, errors.New("the trace is not safe to share")}

func newVerifyCmd() *cobra.Command {
	var secretsFile, show string
	cmd := &cobra.Command{
		Use:   "verify TRACE [--secrets FILE]",
		Short: "Check that a trace holds no secrets before it is shared",
		Long: `verify reads every record of a trace, payloads and bodies decoded, and looks
for the secrets listed in --secrets FILE (one per line: API tokens, cookie
values, passwords, user names, IP addresses, bits of code... also found
URL-encoded, base64'd or as a JupyterHub host label) and for anything shaped
like a token or a cookie value: tornado-signed values (jupyterhub-hub-login,
_xsrf), JWTs, runs of 32+ hex digits, long random-looking base64.

Listed secrets are matched whatever their case (JupyterHub lower-cases user
names), and each part of a listed name (split at dots, @ and spaces, 4
characters or more) is looked for alone: list whole names, and a surname
that survived is found too. A record verify cannot read counts as a finding:
it never clears what it could not check.

It exits 0 when it finds nothing, 1 when it finds something (each finding
names the record and field, with the secret masked) or cannot read the trace.`,
		Example: `  hubreplay verify peak.trace --secrets known-secrets.txt
  hubreplay verify peak.trace --secrets students.txt --show all`,
		Args: exactArgs(1, "a trace file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			limit := -1
			if show != "all" {
				n, err := strconv.Atoi(show)
				if err != nil || n < 0 {
					return usageError{fmt.Errorf("--show takes a number of findings or 'all', not %q", show)}
				}
				limit = n
			}
			var secrets []string
			if secretsFile != "" {
				var err error
				if secrets, err = anonymize.ReadSecrets(secretsFile); err != nil {
					return err
				}
			}
			r, err := openTrace(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer r.Close()
			p := newProgress(cmd.ErrOrStderr(), args[0], "verifying "+args[0])
			v := anonymize.NewVerifier(secrets)
			v.Max = limit
			err = v.Verify(cmd.Context(), r, p.update)
			p.done()
			out := cmd.OutOrStdout()
			for _, f := range v.Findings {
				fmt.Fprintln(out, f)
			}
			if n := v.Count - int64(len(v.Findings)); n > 0 {
				fmt.Fprintf(out, "... and %d more (--show all prints every one)\n", n)
			}
			if err != nil {
				return err
			}
			if r.Header().Anon.Raw {
				fmt.Fprintln(out, "note: this trace was captured with --raw")
			}
			if v.Count > 0 {
				fmt.Fprintf(out, "%s: %d findings in %d records\n", args[0], v.Count, v.Records())
				return errLeaks
			}
			fmt.Fprintf(out, "%s: no secrets found in %d records (%d listed secrets and token shapes checked)\n", args[0], v.Records(), len(secrets))
			return nil
		},
	}
	cmd.Flags().StringVar(&secretsFile, "secrets", "", "file of known secrets, one per line (# comments)")
	cmd.Flags().StringVar(&show, "show", "50", "findings to print: a number, or 'all'")
	return cmd
}
