using System.Net;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using MyDvpn.BaseNode.Directory;
using MyDvpn.Common;
using Proto = MyDvpn.Protocol.Directory;

namespace MyDvpn.BaseNode;

/// <summary>Between the wire (proto) and the directory entity's records; validates what comes in.</summary>
public static class DirectoryMapping
{
    public static SuperNodeInfo ToInfo(Proto.SuperNodeRegistration? registration)
    {
        if (registration is null)
            throw Invalid("registration is missing");
        if (!RegionName.IsValid(registration.Region, out var regionProblem))
            throw Invalid(regionProblem);
        if (!NodeId.IsValid(registration.SupernodeId, out var idProblem))
            throw Invalid($"supernode_id '{registration.SupernodeId}': {idProblem}");
        try
        {
            HostPort.Parse(registration.GrpcEndpoint, "grpc_endpoint");
        }
        catch (ConfigurationException ex)
        {
            throw Invalid(ex.Message);
        }
        if (!IPAddress.TryParse(registration.PublicIp, out _))
            throw Invalid($"public_ip '{registration.PublicIp}' is not an IP address");
        if (registration.RelayPortLow is < 1 or > 65535 || registration.RelayPortHigh is < 1 or > 65535
            || registration.RelayPortLow > registration.RelayPortHigh)
            throw Invalid($"relay ports {registration.RelayPortLow}-{registration.RelayPortHigh} are not a range within 1-65535");
        if (registration.Capacity == 0)
            throw Invalid("capacity must be at least 1");
        return new SuperNodeInfo(registration.SupernodeId, registration.Region, registration.GrpcEndpoint, registration.PublicIp,
            (int)registration.RelayPortLow, (int)registration.RelayPortHigh, (int)registration.Capacity);
    }

    public static SuperNodeLoad ToLoad(Proto.SuperNodeLoad? load) =>
        load is null ? SuperNodeLoad.None : new SuperNodeLoad((int)load.ConnectedPeers, (int)load.ExitsAvailable);

    public static Proto.RegionEntry ToProto(RegionView view)
    {
        var entry = new Proto.RegionEntry { Region = view.Region };
        entry.Supernodes.AddRange(view.SuperNodes.Select(ToProto));
        return entry;
    }

    public static Proto.SuperNodeEntry ToProto(SuperNodeView view) => new()
    {
        Registration = new Proto.SuperNodeRegistration
        {
            SupernodeId = view.Info.SuperNodeId,
            Region = view.Info.Region,
            GrpcEndpoint = view.Info.GrpcEndpoint,
            PublicIp = view.Info.PublicIp,
            RelayPortLow = (uint)view.Info.RelayPortLow,
            RelayPortHigh = (uint)view.Info.RelayPortHigh,
            Capacity = (uint)view.Info.Capacity,
        },
        Load = new Proto.SuperNodeLoad
        {
            ConnectedPeers = (uint)view.Load.ConnectedPeers,
            ExitsAvailable = (uint)view.Load.ExitsAvailable,
        },
        Status = view.Status switch
        {
            SuperNodeStatus.Up => Proto.SuperNodeStatus.Up,
            SuperNodeStatus.Down => Proto.SuperNodeStatus.Down,
            _ => Proto.SuperNodeStatus.Left,
        },
        RegisteredAt = Timestamp.FromDateTimeOffset(view.RegisteredAt),
        LastReportAt = Timestamp.FromDateTimeOffset(view.LastReportAt),
    };

    private static RpcException Invalid(string reason) => new(new Status(StatusCode.InvalidArgument, reason));
}
