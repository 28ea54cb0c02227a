package importer

func importEnvoy(b *builder, docs []*doc) error        { return nil }
func importIngressNginx(b *builder, docs []*doc) error { return nil }
func importGatewayAPI(b *builder, docs []*doc) error   { return nil }
func importEnvoyGateway(b *builder, docs []*doc) error { return nil }
