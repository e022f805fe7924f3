using System.Text;

namespace MyDvpn.IntegrationTests;

/// <summary>
/// The series a PromQL expression reads, as Prometheus's parser sees them: each selector's metric name and the label names its
/// matchers use. Functions and aggregations (an identifier before <c>(</c>, or an aggregation before <c>by</c>/<c>without</c>),
/// keywords, grouping label lists, strings, numbers, durations, ranges and Grafana's <c>$variables</c> are not metric names.
/// </summary>
internal static class PromQl
{
    public sealed record Selector(string Metric, IReadOnlySet<string> Labels);

    private static readonly HashSet<string> Grouping = ["by", "without", "on", "ignoring", "group_left", "group_right"];

    private static readonly HashSet<string> Keywords = ["bool", "offset", "and", "or", "unless", "atan2"];

    private static readonly HashSet<string> Aggregations =
        ["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"];

    private static readonly HashSet<string> MatchOperators = ["=", "!=", "=~", "!~"];

    private enum Kind { Identifier, Punctuation, Operator, Literal }

    private sealed record Token(Kind Kind, string Text);

    public static IReadOnlyList<Selector> Selectors(string expression)
    {
        var tokens = Tokens(expression);
        var selectors = new List<Selector>();
        for (var i = 0; i < tokens.Count; i++)
        {
            var token = tokens[i];
            var next = i + 1 < tokens.Count ? tokens[i + 1] : null;
            if (token is { Kind: Kind.Punctuation, Text: "[" })
            {
                i = Closing(tokens, i, "[", "]");
                continue;
            }
            if (token is { Kind: Kind.Punctuation, Text: "{" })
                throw new FormatException($"a selector without a metric name in {expression}: name the metric");
            if (token.Kind != Kind.Identifier)
                continue;
            if (Grouping.Contains(token.Text))
            {
                if (next is { Text: "(" })
                    i = Closing(tokens, i + 1, "(", ")");
                continue;
            }
            if (Keywords.Contains(token.Text) || next is { Text: "(" }
                || (Aggregations.Contains(token.Text) && next is { Kind: Kind.Identifier, Text: "by" or "without" }))
                continue;
            var labels = new HashSet<string>(StringComparer.Ordinal);
            if (next is { Text: "{" })
            {
                var end = Closing(tokens, i + 1, "{", "}");
                for (var j = i + 2; j < end; j++)
                {
                    if (tokens[j].Kind == Kind.Identifier && j + 1 < end && tokens[j + 1].Kind == Kind.Operator && MatchOperators.Contains(tokens[j + 1].Text))
                        labels.Add(tokens[j].Text);
                }
                i = end;
            }
            selectors.Add(new Selector(token.Text, labels));
        }
        return selectors;
    }

    private static int Closing(IReadOnlyList<Token> tokens, int open, string opening, string closing)
    {
        var depth = 0;
        for (var i = open; i < tokens.Count; i++)
        {
            if (tokens[i].Kind != Kind.Punctuation)
                continue;
            if (tokens[i].Text == opening)
                depth++;
            else if (tokens[i].Text == closing && --depth == 0)
                return i;
        }
        throw new FormatException($"no {closing} closes the {opening} of token {open}");
    }

    private static List<Token> Tokens(string expression)
    {
        var tokens = new List<Token>();
        var at = 0;
        while (at < expression.Length)
        {
            var c = expression[at];
            if (char.IsWhiteSpace(c))
            {
                at++;
            }
            else if (c == '#')
            {
                while (at < expression.Length && expression[at] != '\n')
                    at++;
            }
            else if (c is '"' or '\'' or '`')
            {
                var text = new StringBuilder();
                at++;
                while (at < expression.Length && expression[at] != c)
                {
                    if (expression[at] == '\\' && c != '`')
                        at++;
                    text.Append(expression[at++]);
                }
                if (at >= expression.Length)
                    throw new FormatException($"a string without its closing {c} in {expression}");
                at++;
                tokens.Add(new Token(Kind.Literal, text.ToString()));
            }
            else if (char.IsAsciiDigit(c) || (c == '.' && at + 1 < expression.Length && char.IsAsciiDigit(expression[at + 1])))
            {
                // Numbers and durations (0.99, 1e3, 5m, 1h30m).
                var start = at;
                while (at < expression.Length && (char.IsAsciiLetterOrDigit(expression[at]) || expression[at] == '.'))
                    at++;
                tokens.Add(new Token(Kind.Literal, expression[start..at]));
            }
            else if (char.IsAsciiLetter(c) || c is '_' or ':')
            {
                var start = at;
                while (at < expression.Length && (char.IsAsciiLetterOrDigit(expression[at]) || expression[at] is '_' or ':'))
                    at++;
                tokens.Add(new Token(Kind.Identifier, expression[start..at]));
            }
            else if (c == '$')
            {
                // A Grafana variable: $name, ${name}, ${name:format}.
                var start = at++;
                if (at < expression.Length && expression[at] == '{')
                {
                    while (at < expression.Length && expression[at] != '}')
                        at++;
                    at++;
                }
                else
                {
                    while (at < expression.Length && (char.IsAsciiLetterOrDigit(expression[at]) || expression[at] == '_'))
                        at++;
                }
                tokens.Add(new Token(Kind.Literal, expression[start..at]));
            }
            else if (c is '(' or ')' or '{' or '}' or '[' or ']' or ',')
            {
                tokens.Add(new Token(Kind.Punctuation, c.ToString()));
                at++;
            }
            else
            {
                var two = at + 1 < expression.Length ? expression.Substring(at, 2) : "";
                var text = two is "=~" or "!~" or "!=" or "==" or ">=" or "<=" ? two : c.ToString();
                tokens.Add(new Token(Kind.Operator, text));
                at += text.Length;
            }
        }
        return tokens;
    }
}
