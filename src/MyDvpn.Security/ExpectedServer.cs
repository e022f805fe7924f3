namespace MyDvpn.Security;

/// <summary>
/// The node a node-to-node client means to call, as its server certificate must name it: a BaseNode (the directory),
/// or a SuperNode — of one region when the caller knows which (a SuperNode it found in the directory), of any region
/// otherwise. The server's checks of its caller do not stand in for this: without it, any node certificate of the
/// network could answer for the directory or for another region's exit pool.
/// </summary>
public sealed record ExpectedServer
{
    private ExpectedServer(NodeRole role, string? region)
    {
        Role = role;
        Region = region;
    }

    public NodeRole Role { get; }

    /// <summary>A SuperNode's region; null: any region (and always for a BaseNode).</summary>
    public string? Region { get; }

    public static ExpectedServer BaseNode { get; } = new(NodeRole.Base, null);

    /// <summary>A SuperNode of any region (a tool that was given its address).</summary>
    public static ExpectedServer AnySuperNode { get; } = new(NodeRole.Super, null);

    public static ExpectedServer SuperNodeOf(string region)
    {
        ArgumentException.ThrowIfNullOrEmpty(region);
        return new ExpectedServer(NodeRole.Super, region);
    }

    /// <summary>Whether <paramref name="identity"/> is such a node; if not, why, in words for a security event.</summary>
    public bool Admits(NodeIdentity identity, out string reason)
    {
        if (identity.Role == Role && (Region is null || string.Equals(identity.Region, Region, StringComparison.Ordinal)))
        {
            reason = "";
            return true;
        }
        reason = $"its certificate names {identity}, not {this}";
        return false;
    }

    public override string ToString() => Role == NodeRole.Base ? "a BaseNode" : Region is null ? "a SuperNode" : $"a SuperNode of region {Region}";
}
