using System.CommandLine;
using MyDvpn.Security;

namespace MyDvpn.Cli.Commands;

public static class KeygenCommand
{
    public static Command Build(TextWriter output)
    {
        var outFile = new Option<string>("--out") { Description = "File for the new Ed25519 identity key (created with mode 0600; never overwritten)", Required = true };
        var command = new Command("keygen", "Make an Ed25519 identity key for a peer; prints its public key (base64)") { outFile };
        command.SetAction(parse =>
        {
            var key = IdentityKey.Generate();
            key.Save(parse.GetRequiredValue(outFile));
            output.WriteLine(key.PublicKeyBase64);
            return CliApplication.Success;
        });
        return command;
    }
}
