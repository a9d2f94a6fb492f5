"""Studies: methods x datasets x seeds as one command, locally or on Slurm, and their report.

    fdae study studies/cpu-small.yaml        # run (or finish) every cell
    fdae study report studies/cpu-small.yaml # the table: mean +- std over seeds
"""
