using System.Collections.Immutable;
using MyDvpn.DataPlane.Devices;
using MyDvpn.DataPlane.Os;

namespace MyDvpn.DataPlane.Reconciliation;

/// <summary>
/// What the actor did to the host that the host itself cannot tell it later: the sysctl values it replaced, the rules it
/// added (rather than found), the nft table it wrote. Immutable: an operation returns the new memory, the actor keeps it.
/// </summary>
/// <param name="LeftoversRemoved">Whatever a crashed agent left of the interface was removed (done once, before the first device).</param>
/// <param name="FullTunnel">The full tunnel whose table route and rules are in place.</param>
/// <param name="OwnedRules">The policy rules the actor added (removed on teardown; rules it found are left alone).</param>
/// <param name="OriginalSrcValidMark">net.ipv4.conf.all.src_valid_mark before the actor set it; null: not changed.</param>
/// <param name="NftDocument">The nft batch last applied (the table exists); null: no table.</param>
/// <param name="OriginalIpForward">net.ipv4.ip_forward before the actor set it; null: not changed.</param>
internal sealed record HostMemory(
    bool LeftoversRemoved,
    FullTunnelSpec? FullTunnel,
    ImmutableList<PolicyRule> OwnedRules,
    string? OriginalSrcValidMark,
    string? NftDocument,
    string? OriginalIpForward)
{
    public static readonly HostMemory Empty = new(false, null, [], null, null, null);

    /// <summary>Something on the host is still the actor's to undo.</summary>
    public bool HoldsHostState =>
        FullTunnel is not null || !OwnedRules.IsEmpty || OriginalSrcValidMark is not null || NftDocument is not null || OriginalIpForward is not null;
}

/// <summary>How an operation ended: the memory and device the actor keeps from now on, and its answer.</summary>
/// <param name="Failure">null when it succeeded.</param>
/// <param name="Problems">What a teardown could not undo.</param>
internal sealed record OperationResult(
    HostMemory Memory,
    IWireGuardDevice? Device,
    InterfaceReading? Reading,
    string? Failure,
    ImmutableArray<string> Problems);
