"""Reading and writing genomic files: VCF/BCF, PLINK filesets, phenotypes, variant keys and the writers."""
