using System.CommandLine;

namespace MyDvpn.Cli.Commands;

/// <summary>
/// <c>mydvpn completion bash|zsh|fish</c>: a script that makes the shell complete <c>mydvpn</c>'s commands, options and
/// option values. Each script asks <c>mydvpn</c> itself through System.CommandLine's <c>[suggest:POSITION]</c> directive,
/// which prints the completions for the line typed so far: nothing else (no dotnet-suggest) needs installing.
/// </summary>
public static class CompletionCommand
{
    public enum Shell
    {
        Bash,
        Zsh,
        Fish,
    }

    public static Command Build(TextWriter output)
    {
        var shell = EnumOption.Argument<Shell>("SHELL", "bash, zsh or fish");
        var command = new Command("completion",
            "Print a shell completion script. bash: `source <(mydvpn completion bash)` in ~/.bashrc; " +
            "zsh: `source <(mydvpn completion zsh)` in ~/.zshrc (after compinit); fish: `mydvpn completion fish > ~/.config/fish/completions/mydvpn.fish`")
        {
            shell,
        };
        command.SetAction(parse =>
        {
            output.Write(Script(parse.GetValue(shell)));
            return CliApplication.Success;
        });
        return command;
    }

    public static string Script(Shell shell) => shell switch
    {
        Shell.Bash => """
            # mydvpn completion for bash: source <(mydvpn completion bash)
            _mydvpn_complete() {
                local IFS=$'\n'
                local line="${COMP_LINE:0:COMP_POINT}"
                COMPREPLY=($(compgen -W "$(mydvpn "[suggest:${#line}]" "$line" 2>/dev/null)" -- "${COMP_WORDS[COMP_CWORD]}"))
            }
            complete -o default -F _mydvpn_complete mydvpn

            """,
        Shell.Zsh => """
            #compdef mydvpn
            # mydvpn completion for zsh: source <(mydvpn completion zsh), after compinit
            _mydvpn() {
                local line="${BUFFER[1,CURSOR]}"
                local -a suggestions
                suggestions=("${(@f)$(mydvpn "[suggest:${#line}]" "$line" 2>/dev/null)}")
                compadd -a suggestions
            }
            compdef _mydvpn mydvpn

            """,
        _ => """
            # mydvpn completion for fish: mydvpn completion fish > ~/.config/fish/completions/mydvpn.fish
            function __mydvpn_complete
                set -l line (commandline -cp)
                mydvpn "[suggest:"(string length -- "$line")"]" "$line" 2>/dev/null
            end
            complete -c mydvpn -f -a '(__mydvpn_complete)'

            """,
    };
}
