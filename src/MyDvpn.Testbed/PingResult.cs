using System.Globalization;
using System.Text.RegularExpressions;

namespace MyDvpn.Testbed;

/// <summary>What <c>ping -c N -q</c> reported: packets sent and answered, loss, and the average round trip (none when nothing came back).</summary>
public sealed partial record PingResult(int Transmitted, int Received, double LossPercent, TimeSpan? AverageRoundTrip)
{
    /// <summary>Parses the summary of iputils ping (<c>N packets transmitted, M received, [+E errors,] L% packet loss</c> and the rtt line).</summary>
    /// <exception cref="FormatException">The text holds no ping summary.</exception>
    public static PingResult Parse(string output)
    {
        var counts = Summary().Match(output);
        if (!counts.Success)
            throw new FormatException($"no ping summary in: {output.Trim()}");
        var rtt = RoundTrip().Match(output);
        return new PingResult(
            int.Parse(counts.Groups["sent"].Value, CultureInfo.InvariantCulture),
            int.Parse(counts.Groups["received"].Value, CultureInfo.InvariantCulture),
            double.Parse(counts.Groups["loss"].Value, CultureInfo.InvariantCulture),
            rtt.Success ? TimeSpan.FromMilliseconds(double.Parse(rtt.Groups["avg"].Value, CultureInfo.InvariantCulture)) : null);
    }

    [GeneratedRegex(@"(?<sent>\d+) packets transmitted, (?<received>\d+) (?:packets )?received,(?: \+\d+ \w+,)* (?<loss>[\d.]+)% packet loss")]
    private static partial Regex Summary();

    [GeneratedRegex(@"(?:rtt|round-trip) min/avg/max(?:/mdev)? = [\d.]+/(?<avg>[\d.]+)/")]
    private static partial Regex RoundTrip();
}
